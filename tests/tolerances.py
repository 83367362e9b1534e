"""One table of tolerances, keyed by dtype and op. Never loosen one without a comment saying why."""
TOL = {
    "float32": {
        "gemm": 2e-6,        # per unit of sqrt(K) * max|C|
        "elementwise": 2e-6,  # relative, activations and losses
        "optimizer": 2e-6,
        "reduction": 1e-12,   # relative; sums accumulate in float64 for every dtype
        "grad_fd": None,      # finite differences run in float64 only
        # normalization: relative to max|want| + 1; outputs are products of the rounded float32
        # mean / inv_std (each ~6e-8 relative), measured worst ~1e-7.
        "normalization": 1e-6,
        "pooling": 2e-6,      # relative to max|want| + 1 (sums accumulate in double)
        "vecmath": 3e-7,      # max relative error of vm::exp/sigmoid/tanh: ~2.5 float32 ulp
        # lstm: relative to max|want| + 1, against a float64 reference; errors compound over
        # the T steps and the K = T * B sums of the weight gradients (measured worst ~2e-6).
        "lstm": 2e-5,
        # graph: relative to max|want| + 1, the same model on inputs that differ only in how
        # the kernels block their work (e.g. more padded steps in the input projection GEMM).
        "graph": 1e-5,
        # attention: relative to max|want| + 1 against a float64 reference; sums of Tk products
        # in float32 and vm::exp (a few ulp), the backward through two chained products.
        "attention": 2e-5,
        # onnx: max abs difference of onnxruntime's output to model.predict (issue 10's bar)
        "onnx": 1e-5,
        # conv: relative to max|want| + 1 against a float64 reference; sums of K = KH*KW*C
        # float32 products in GEMM order (the weight gradients over B*OH*OW rows).
        "conv": 2e-5,

        # gru / simple_rnn: as lstm (the same compounding over steps and T * B sums).
        "gru": 2e-5,
    },
    "float64": {
        "gemm": 1e-14,
        "elementwise": 1e-12,
        "optimizer": 1e-12,
        "reduction": 1e-12,   # relative
        "grad_fd": 1e-6,      # central differences with h = 1e-6, relative to the gradient norm
        "normalization": 1e-12,
        "pooling": 1e-13,
        "vecmath": 6e-16,     # max relative error of vm::exp/sigmoid/tanh: ~3 float64 ulp
        "lstm": 1e-12,        # relative to max|want| + 1
        "graph": 1e-12,
        "attention": 1e-12,   # relative to max|want| + 1
        "conv": 1e-12,        # relative to max|want| + 1

        "gru": 1e-12,         # relative to max|want| + 1
    },
}
