"""Metrics: Precision, Recall, AUC (ROC and PR), F1Score and the top-k accuracies against the
quantities written out in NumPy (streamed over uneven batches, with sample weights), closed
forms (a perfectly ranked and a bucket-resolved ROC AUC equal the Mann-Whitney statistic), an
optional comparison with scikit-learn, configs, the registry and use in compile/fit."""
import numpy as np
import pytest

import nanonet as nn
from nanonet import metrics

BATCHES = [(0, 7), (7, 8), (8, 40), (40, None)]  # uneven, one of a single sample


def _stream(metric, y, p, w=None):
    metric.reset_state()
    for a, b in BATCHES:
        metric.update_state(y[a:b], p[a:b], None if w is None else w[a:b])
    return metric.result()


def _binary_data(rng, n=101, c=1):
    y = (rng.random((n, c)) < 0.4).astype(np.float64)
    p = np.clip(0.35 * y + 0.65 * rng.random((n, c)), 0, 1)
    w = rng.uniform(0.1, 2.0, n)
    return y, p, w


def _counts(y, p, w, thr):
    """(tp, fp, tn, fn) at one threshold, written out: positive prediction when p > thr."""
    ww = np.broadcast_to(w.reshape(-1, *([1] * (p.ndim - 1))), p.shape)
    pos, pred = y != 0, p > thr
    return (np.sum(ww * (pred & pos)), np.sum(ww * (pred & ~pos)),
            np.sum(ww * (~pred & ~pos)), np.sum(ww * (~pred & pos)))


@pytest.mark.parametrize("c", [1, 3])
def test_precision_recall_match_counts(c):
    rng = np.random.default_rng(1)
    y, p, w = _binary_data(rng, c=c)
    for weights in (None, w):
        ww = np.ones(len(y)) if weights is None else weights
        tp, fp, tn, fn = _counts(y, p, ww, 0.5)
        assert _stream(metrics.Precision(), y, p, weights) == pytest.approx(tp / (tp + fp),
                                                                           rel=1e-12)
        assert _stream(metrics.Recall(), y, p, weights) == pytest.approx(tp / (tp + fn), rel=1e-12)
    # a list of thresholds (unsorted) gives a list, in the given order
    th = [0.7, 0.2, 0.5]
    got = _stream(metrics.Precision(thresholds=th), y, p, w)
    want = [(lambda c4: c4[0] / (c4[0] + c4[1]))(_counts(y, p, w, t)) for t in th]
    np.testing.assert_allclose(got, want, rtol=1e-12)
    assert isinstance(got, list)
    got = _stream(metrics.Recall(thresholds=th), y, p, w)
    want = [(lambda c4: c4[0] / (c4[0] + c4[3]))(_counts(y, p, w, t)) for t in th]
    np.testing.assert_allclose(got, want, rtol=1e-12)


def test_precision_recall_class_id_top_k_and_empty():
    rng = np.random.default_rng(2)
    y, p, w = _binary_data(rng, c=4)
    tp, fp, _, fn = _counts(y[:, 2], p[:, 2], w, 0.5)
    assert _stream(metrics.Precision(class_id=2), y, p, w) == pytest.approx(tp / (tp + fp))
    assert _stream(metrics.Recall(class_id=2), y, p, w) == pytest.approx(tp / (tp + fn))
    # top_k=1: only each row's largest prediction is positive (any value, threshold -inf)
    top = np.argmax(p, axis=1)
    pred = np.zeros_like(y, bool)
    pred[np.arange(len(y)), top] = True
    ww = w[:, None]
    tp = np.sum(ww * (pred & (y != 0)))
    fp = np.sum(ww * (pred & (y == 0)))
    fn = np.sum(ww * (~pred & (y != 0)))
    assert _stream(metrics.Precision(top_k=1), y, p, w) == pytest.approx(tp / (tp + fp))
    assert _stream(metrics.Recall(top_k=1), y, p, w) == pytest.approx(tp / (tp + fn))
    # nothing predicted positive: 0, not nan
    m = metrics.Precision()
    m.update_state([[1.0], [0.0]], [[0.1], [0.2]])
    assert m.result() == 0.0
    assert metrics.Recall().result() == 0.0


def _auc_written_out(y, p, w, num_thresholds=200, curve="ROC"):
    """Keras 3's AUC (interpolation), counts by direct comparison at each threshold."""
    n = num_thresholds
    th = [-1e-7] + [(i + 1) / (n - 1) for i in range(n - 2)] + [1 + 1e-7]
    c = np.array([_counts(y, p, w, t) for t in th])
    tp, fp, tn, fn = c.T

    def div(a, b):
        return np.where(b > 0, a / np.where(b > 0, b, 1), 0.0)
    if curve == "ROC":
        x, yy = div(fp, fp + tn), div(tp, tp + fn)
        return float(np.sum((x[:-1] - x[1:]) * (yy[:-1] + yy[1:]) / 2))
    total = 0.0  # Davis & Goadrich interpolation between thresholds i and i + 1
    for i in range(n - 1):
        dtp = tp[i] - tp[i + 1]
        P0, P1 = tp[i] + fp[i], tp[i + 1] + fp[i + 1]
        dp = P0 - P1
        slope = dtp / dp if dp > 0 else 0.0
        intercept = tp[i + 1] - slope * P1
        ratio = P0 / P1 if (P0 > 0 and P1 > 0) else 1.0
        denom = tp[i + 1] + fn[i + 1]
        if denom > 0:
            total += slope * (dtp + intercept * np.log(ratio)) / denom
    return total


@pytest.mark.parametrize("curve", ["ROC", "PR"])
@pytest.mark.parametrize("num_thresholds", [200, 7, 2])
def test_auc_matches_keras_formulas(curve, num_thresholds):
    rng = np.random.default_rng(3)
    y, p, w = _binary_data(rng, c=2)
    for weights in (None, w):
        ww = np.ones(len(y)) if weights is None else weights
        want = _auc_written_out(y, p, ww, num_thresholds, curve)
        got = _stream(metrics.AUC(num_thresholds=num_thresholds, curve=curve), y, p, weights)
        assert got == pytest.approx(want, rel=1e-12, abs=1e-15)


def _mann_whitney(y, p):
    pos, neg = p[y != 0], p[y == 0]
    gt = (pos[:, None] > neg[None, :]).mean()
    eq = (pos[:, None] == neg[None, :]).mean()
    return gt + 0.5 * eq


def test_auc_closed_forms():
    rng = np.random.default_rng(4)
    # every score alone in its own threshold bucket: the thresholded ROC curve passes through
    # every vertex of the empirical one, so the trapezoid sum is the exact AUC
    n = 60
    buckets = rng.permutation(199)[:n]
    p = (buckets + 0.5) / 199.0
    y = (rng.random(n) < 0.5).astype(float)
    y[:2] = [0, 1]
    assert _stream(metrics.AUC(), y, p) == pytest.approx(_mann_whitney(y, p), rel=1e-12)
    # perfect ranking: 1 (ROC and PR); reversed: 0 (ROC)
    y = np.array([0, 0, 0, 1, 1.0])
    p = np.array([0.1, 0.2, 0.3, 0.8, 0.9])
    for curve in ("ROC", "PR"):
        m = metrics.AUC(curve=curve)
        m.update_state(y, p)
        assert m.result() == pytest.approx(1.0, abs=1e-12)
    m = metrics.AUC()
    m.update_state(y, 1 - p)
    assert m.result() == pytest.approx(0.0, abs=1e-12)
    # from_logits applies a sigmoid first
    z = rng.standard_normal(50)
    y = (rng.random(50) < 0.5).astype(float)
    a, b = metrics.AUC(from_logits=True), metrics.AUC()
    a.update_state(y, z)
    b.update_state(y, 1 / (1 + np.exp(-z)))
    assert a.result() == b.result()
    # summation methods: minoring <= interpolation <= majoring
    res = []
    for s in ("minoring", "interpolation", "majoring"):
        m = metrics.AUC(summation_method=s, num_thresholds=11)
        m.update_state(y, 1 / (1 + np.exp(-z)))
        res.append(m.result())
    assert res[0] <= res[1] <= res[2]
    # explicit thresholds
    m = metrics.AUC(thresholds=[0.25, 0.5, 0.75])
    assert m.num_thresholds == 5


def test_f1_score():
    rng = np.random.default_rng(5)
    n, c = 101, 4
    y = np.eye(c)[rng.integers(0, c, n)]
    p = rng.dirichlet(np.ones(c), n)
    w = rng.uniform(0.1, 2.0, n)
    eps = 1e-7

    def f1(pred, weights):
        ww = weights[:, None]
        tp = np.sum(ww * pred * y, axis=0)
        fp = np.sum(ww * pred * (1 - y), axis=0)
        fn = np.sum(ww * (1 - pred) * y, axis=0)
        prec, rec = tp / (tp + fp + eps), tp / (tp + fn + eps)
        per_class = 2 * prec * rec / (prec + rec + eps)
        TP, FP, FN = tp.sum(), fp.sum(), fn.sum()
        P, R = TP / (TP + FP + eps), TP / (TP + FN + eps)
        support = np.sum(ww * y, axis=0)
        return (per_class, 2 * P * R / (P + R + eps), per_class.mean(),
                np.sum(per_class * support / (support.sum() + eps)))

    argmax_pred = (p == p.max(axis=1, keepdims=True)).astype(float)
    for threshold, pred in ((None, argmax_pred), (0.3, (p > 0.3).astype(float))):
        for weights in (None, w):
            ww = np.ones(n) if weights is None else weights
            per_class, micro, macro, weighted = f1(pred, ww)
            np.testing.assert_allclose(_stream(metrics.F1Score(threshold=threshold), y, p,
                                               weights), per_class, rtol=1e-12)
            for average, want in (("micro", micro), ("macro", macro), ("weighted", weighted)):
                got = _stream(metrics.F1Score(average=average, threshold=threshold), y, p,
                              weights)
                assert got == pytest.approx(want, rel=1e-12), average
    # an all-zero row predicts nothing (not every class)
    m = metrics.F1Score(average="micro")
    m.update_state([[1.0, 0.0]], [[0.0, 0.0]])
    assert m.result() == pytest.approx(0.0)


def test_top_k_accuracies():
    rng = np.random.default_rng(6)
    n, c = 101, 9
    p = rng.standard_normal((n, c))  # distinct values: no ties
    ids = rng.integers(0, c, n)
    w = rng.uniform(0.1, 2.0, n)
    rank = np.argsort(np.argsort(-p, axis=1), axis=1)  # 0 = largest
    for k in (1, 3, 5, 9, 12):
        hit = (rank[np.arange(n), ids] < k).astype(float)
        np.testing.assert_array_equal(metrics.sparse_top_k_categorical_accuracy(ids, p, k), hit)
        np.testing.assert_array_equal(metrics.top_k_categorical_accuracy(np.eye(c)[ids], p, k),
                                      hit)
        got = _stream(metrics.SparseTopKCategoricalAccuracy(k=k), ids, p, w)
        assert got == pytest.approx(np.sum(w * hit) / np.sum(w), rel=1e-12)
        got = _stream(metrics.TopKCategoricalAccuracy(k=k), np.eye(c)[ids], p)
        assert got == pytest.approx(hit.mean(), rel=1e-12)
    # Keras's in_top_k on ties: rank = 1 + #(strictly greater), so tied classes all count
    p = np.array([[0.5, 0.5, 0.5, 0.1], [0.1, 0.9, 0.9, 0.2], [np.nan, 0.3, 0.2, 0.1]])
    np.testing.assert_array_equal(metrics.sparse_top_k_categorical_accuracy([2, 2, 0], p, 1),
                                  [1.0, 1.0, 0.0])
    assert metrics.SparseTopKCategoricalAccuracy().k == 5
    # sequences: (B, T, C) with (B, T) ids
    seq = rng.standard_normal((3, 4, 6))
    sids = rng.integers(0, 6, (3, 4))
    assert metrics.sparse_top_k_categorical_accuracy(sids, seq, 2).shape == (3, 4)


def test_configs_registry_and_errors():
    for name, cls in (("precision", metrics.Precision), ("recall", metrics.Recall),
                      ("auc", metrics.AUC), ("f1_score", metrics.F1Score),
                      ("top_k_categorical_accuracy", metrics.TopKCategoricalAccuracy),
                      ("sparse_top_k_categorical_accuracy",
                       metrics.SparseTopKCategoricalAccuracy)):
        m = metrics.get(name)
        assert type(m) is cls and m.name == name and m.direction == "up"
    for m in (metrics.Precision(thresholds=[0.3, 0.6], class_id=1, name="p"),
              metrics.AUC(num_thresholds=50, curve="PR", name="prauc"),
              metrics.F1Score(average="macro", threshold=0.4),
              metrics.SparseTopKCategoricalAccuracy(k=3)):
        again = metrics.deserialize(metrics.serialize(m))
        assert type(again) is type(m) and again.get_config() == m.get_config()
    with pytest.raises(ValueError, match="curve must be 'ROC' or 'PR'; got 'roc'"):
        metrics.AUC(curve="roc")
    with pytest.raises(ValueError, match="num_thresholds must be an int > 1; got 1"):
        metrics.AUC(num_thresholds=1)
    with pytest.raises(ValueError, match="multi_label"):
        metrics.AUC(multi_label=True)
    with pytest.raises(ValueError, match="average must be None, 'micro', 'macro' or 'weighted'"):
        metrics.F1Score(average="samples")
    with pytest.raises(ValueError, match="k must be a positive int; got 0"):
        metrics.TopKCategoricalAccuracy(k=0)
    with pytest.raises(ValueError, match="thresholds must be a finite number"):
        metrics.Precision(thresholds=[])
    with pytest.raises(ValueError, match="class_id 5 is out of range"):
        metrics.Precision(class_id=5).update_state(np.zeros((2, 3)), np.zeros((2, 3)))
    with pytest.raises(ValueError, match=r"class ids must be in \[0, 3\); got 3"):
        metrics.sparse_top_k_categorical_accuracy([3], np.zeros((1, 3)))


def test_compile_and_fit_report_the_new_metrics():
    rng = np.random.default_rng(7)
    x = rng.standard_normal((96, 5)).astype(np.float32)
    y = (x[:, :1] + 0.3 * rng.standard_normal((96, 1)) > 0).astype(np.float32)
    nn.set_seed(2)
    model = nn.Sequential([nn.layers.Input((5,)), nn.layers.Dense(1, activation="sigmoid")])
    model.compile(optimizer="adam", loss="binary_crossentropy",
                  metrics=["auc", "precision", "recall",
                           metrics.AUC(curve="PR", name="pr_auc"),
                           metrics.F1Score(average="micro", threshold=0.5)])
    hist = model.fit(x, y, epochs=3, batch_size=32, verbose=0).history
    for key in ("auc", "precision", "recall", "pr_auc", "f1_score"):
        assert len(hist[key]) == 3 and 0.0 <= hist[key][-1] <= 1.0
    res = model.evaluate(x, y, return_dict=True, verbose=0)
    want = metrics.AUC()
    want.update_state(y, model.predict(x, verbose=0))
    assert res["auc"] == pytest.approx(want.result(), rel=1e-6)
    # multi-class with top-k
    ids = rng.integers(0, 7, 96)
    model = nn.Sequential([nn.layers.Input((5,)), nn.layers.Dense(7, activation="softmax")])
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy",
                  metrics=["sparse_top_k_categorical_accuracy",
                           metrics.SparseTopKCategoricalAccuracy(k=1, name="top1"), "accuracy"])
    hist = model.fit(x, ids, epochs=2, batch_size=32, verbose=0).history
    assert hist["top1"] == pytest.approx(hist["accuracy"])
    assert all(a >= b for a, b in zip(hist["sparse_top_k_categorical_accuracy"], hist["top1"]))


def test_against_sklearn():
    skm = pytest.importorskip("sklearn.metrics")
    rng = np.random.default_rng(8)
    y, p, w = _binary_data(rng, n=500)
    for weights in (None, w):
        got = _stream(metrics.Precision(), y, p, weights)
        assert got == pytest.approx(skm.precision_score(y, p > 0.5, sample_weight=weights))
        got = _stream(metrics.Recall(), y, p, weights)
        assert got == pytest.approx(skm.recall_score(y, p > 0.5, sample_weight=weights))
        # thresholded AUC: within the grid's resolution of the exact one
        got = _stream(metrics.AUC(num_thresholds=1000), y, p, weights)
        assert got == pytest.approx(skm.roc_auc_score(y, p, sample_weight=weights), abs=2e-3)
    n, c = 300, 4
    yc = np.eye(c)[rng.integers(0, c, n)]
    pc = rng.dirichlet(np.ones(c), n)
    for average in ("micro", "macro", "weighted"):
        got = _stream(metrics.F1Score(average=average), yc, pc)
        want = skm.f1_score(yc.argmax(1), pc.argmax(1), average=average)
        assert got == pytest.approx(want, abs=1e-5)
    got = _stream(metrics.SparseTopKCategoricalAccuracy(k=2), yc.argmax(1), pc)
    assert got == pytest.approx(skm.top_k_accuracy_score(yc.argmax(1), pc, k=2))


def test_against_keras():
    """Optional: streamed results equal keras.metrics.* (Keras 3, float32)."""
    from .peers import keras_or_skip
    keras = keras_or_skip()
    M = keras.metrics
    rng = np.random.default_rng(9)
    y = (rng.random(300) > 0.6).astype(np.float32)
    p = np.clip(y * 0.3 + rng.random(300) * 0.7, 0, 1).astype(np.float32)
    w = rng.random(300).astype(np.float32)
    pairs = [(M.AUC(), metrics.AUC()), (M.AUC(curve="PR"), metrics.AUC(curve="PR")),
             (M.AUC(num_thresholds=13), metrics.AUC(num_thresholds=13)),
             (M.Precision(), metrics.Precision()),
             (M.Recall(thresholds=[0.3, 0.7]), metrics.Recall(thresholds=[0.3, 0.7]))]
    for km, nm in pairs:
        for a, b in ((0, 100), (100, 300)):
            km.update_state(y[a:b], p[a:b], sample_weight=w[a:b])
            nm.update_state(y[a:b], p[a:b], sample_weight=w[a:b])
        np.testing.assert_allclose(nm.result(), np.asarray(km.result()), rtol=1e-5,
                                   err_msg=nm.name)
    yc = np.eye(6, dtype=np.float32)[rng.integers(0, 6, 50)]
    pc = rng.random((50, 6)).astype(np.float32)
    pairs = [(M.F1Score(average=a), metrics.F1Score(average=a))
             for a in (None, "micro", "macro", "weighted")]
    pairs += [(M.TopKCategoricalAccuracy(k=3), metrics.TopKCategoricalAccuracy(k=3))]
    for km, nm in pairs:
        km.update_state(yc, pc)
        nm.update_state(yc, pc)
        np.testing.assert_allclose(nm.result(), np.asarray(km.result()), rtol=1e-5)
    km, nm = M.SparseTopKCategoricalAccuracy(k=2), metrics.SparseTopKCategoricalAccuracy(k=2)
    km.update_state(yc.argmax(1), pc)
    nm.update_state(yc.argmax(1), pc)
    assert nm.result() == pytest.approx(float(km.result()), rel=1e-6)
