"""Peak extra memory of the attention core, forward + backward, at T = 2048, B = 1, H = 4, D = 32
(float32, causal): the growth of the process's peak RSS across the two calls, measured in a fresh
interpreter per thread count, with the inputs allocated (and touched) before. One T x T float32
score matrix per head would be 16 MB; the flash kernel keeps none.
Run: PYTHONPATH=python python benchmarks/attention_memory.py
"""
import json
import subprocess
import sys

CHILD = r"""
import json, resource, sys
import numpy as np
import nanonet as nn
nn.set_num_threads(int(sys.argv[1]))
B, H, T, D = 1, 4, 2048, 32
rng = np.random.default_rng(0)
q, k, v, do = (rng.standard_normal((B, H, T, D)).astype(np.float32) for _ in range(4))
small = [a[:, :, :16].copy() for a in (q, k, v, do)]  # warm the code paths on a tiny problem
o, l = nn.ops.attention_forward(*small[:3], causal=True)
nn.ops.attention_backward(small[3], *small[:3], o, l, causal=True)
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
out, lse = nn.ops.attention_forward(q, k, v, causal=True)
dq, dk, dv = nn.ops.attention_backward(do, q, k, v, out, lse, causal=True)
after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
outputs = sum(a.nbytes for a in (out, lse, dq, dk, dv))
print(json.dumps({"threads": int(sys.argv[1]), "peak_growth_mb": (after - before) / 1024,
                  "outputs_mb": outputs / 2**20}))
"""


def main():
    for threads in (1, 2):
        res = subprocess.run([sys.executable, "-c", CHILD, str(threads)], capture_output=True,
                             text=True, check=True)
        r = json.loads(res.stdout)
        print(f"threads {r['threads']}: peak RSS grows {r['peak_growth_mb']:.1f} MB, outputs "
              f"(out, lse, dq, dk, dv) included ({r['outputs_mb']:.1f} MB of them; memory the "
              f"allocator already held is reused, so the growth can be below that). One T x T "
              f"float32 score matrix per head would be 16 MB, 64 MB for the 4 heads")


if __name__ == "__main__":
    main()
