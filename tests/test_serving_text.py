"""Serving text models and labels (issue 11): string inputs on every protocol (/predict, TF
Serving, KServe v2 BYTES tensors), class names in the answers and in /health, and the errors."""
import http.client
import json

import numpy as np
import pytest

import nanonet as nn
from nanonet.layers import TextVectorization
from nanonet.serving import ModelServer

CORPUS = ["a small domesticated carnivore", "a large wild cat", "a hand tool for cutting",
          "a machine that cuts wood"]
NAMES = ["noun.animal", "noun.artifact", "noun.plant"]


def _text_model(shape=(1,), units=3):
    nn.set_seed(1)
    tv = TextVectorization(max_tokens=30, output_sequence_length=5)
    tv.adapt(CORPUS)
    text = nn.Input(shape=shape, dtype="string", name="text")
    h = nn.layers.GlobalAveragePooling1D()(nn.layers.Embedding(30, 4)(tv(text)))
    act = "softmax" if units > 1 else "sigmoid"
    model = nn.Model(text, nn.layers.Dense(units, activation=act, name="probs")(h),
                     name="texts")
    # distinct answers per text: random weights with a large spread
    rng = np.random.default_rng(0)
    model.set_weights([rng.normal(0, 3, w.shape).astype(w.dtype) for w in model.weights])
    return model


class _Client:
    def __init__(self, server):
        self.conn = http.client.HTTPConnection(server.host, server.port, timeout=60)

    def request(self, method, path, body=None):
        self.conn.request(method, path, body=None if body is None else json.dumps(body))
        resp = self.conn.getresponse()
        return resp.status, json.loads(resp.read())


@pytest.fixture
def served():
    model = _text_model()
    model.class_names = NAMES
    with ModelServer(model, port=0) as server:
        client = _Client(server)
        yield model, server, client
        client.conn.close()


def _want(model, texts):
    p = model.predict(list(texts), verbose=0)
    return p, [NAMES[i] for i in p.argmax(axis=1)]


def test_predict_takes_a_sentence_or_a_batch(served):
    model, _, c = served
    p, labels = _want(model, CORPUS)
    status, body = c.request("POST", "/predict", {"inputs": CORPUS[0]})
    assert status == 200 and body["labels"] == labels[0]
    np.testing.assert_allclose(body["outputs"], p[0], rtol=1e-5)
    status, body = c.request("POST", "/predict", {"inputs": CORPUS})
    assert status == 200 and body["labels"] == labels
    np.testing.assert_allclose(body["outputs"], p, rtol=1e-5)
    status, body = c.request("POST", "/predict", {"instances": CORPUS[1:3]})
    assert status == 200 and body["labels"] == labels[1:3]
    status, body = c.request("POST", "/predict", {"inputs": [[t] for t in CORPUS]})
    assert status == 200 and body["labels"] == labels


def test_tf_serving_rows_and_columns(served):
    model, server, c = served
    p, labels = _want(model, CORPUS)
    path = f"/v1/models/{server.model_name}:predict"
    status, body = c.request("POST", path, {"instances": CORPUS})
    assert status == 200 and body["labels"] == labels
    np.testing.assert_allclose(body["predictions"], p, rtol=1e-5)
    status, body = c.request("POST", path, {"instances": [{"text": t} for t in CORPUS[:2]]})
    assert status == 200 and body["labels"] == labels[:2]
    status, body = c.request("POST", path, {"inputs": {"text": CORPUS}})
    assert status == 200 and body["labels"] == labels
    status, meta = c.request("GET", f"/v1/models/{server.model_name}/metadata")
    sig = meta["metadata"]["signature_def"]["signature_def"]["serving_default"]
    assert sig["inputs"]["text"]["dtype"] == "DT_STRING"


def test_kserve_v2_bytes_tensors(served):
    model, server, c = served
    p, labels = _want(model, CORPUS)
    path = f"/v2/models/{server.model_name}/infer"
    for shape in ([4], [4, 1]):
        status, body = c.request("POST", path, {"inputs": [
            {"name": "text", "shape": shape, "datatype": "BYTES", "data": CORPUS}]})
        assert status == 200, body
        probs, labs = body["outputs"]
        assert probs["name"] == "probs" and probs["shape"] == [4, 3]
        np.testing.assert_allclose(np.reshape(probs["data"], (4, 3)), p, rtol=1e-5)
        assert labs == {"name": "labels", "datatype": "BYTES", "shape": [4], "data": labels}
    status, body = c.request("POST", path, {"inputs": [
        {"name": "text", "shape": [1], "datatype": "BYTES", "data": [CORPUS[0]]}],
        "outputs": [{"name": "labels"}]})
    assert status == 200 and [o["name"] for o in body["outputs"]] == ["labels"]
    status, meta = c.request("GET", f"/v2/models/{server.model_name}")
    assert meta["inputs"] == [{"name": "text", "datatype": "BYTES", "shape": [-1, 1]}]


def test_health_lists_the_class_names(served):
    _, _, c = served
    status, health = c.request("GET", "/health")
    assert status == 200 and health["class_names"] == NAMES
    assert health["inputs"] == [{"name": "text", "shape": [None, 1], "dtype": "string"}]


@pytest.mark.parametrize("path,body,msg", [
    ("/predict", {"inputs": [1, 2]}, "list of strings"),
    ("/predict", {"inputs": 3}, "string or a list of strings"),
    ("/predict", {"inputs": [["a", "b"]]}, "each sample must have shape"),
    ("/predict", {"inputs": [["a"], "b"]}, "rectangular"),
    ("/v2/models/texts/infer", {"inputs": [{"name": "text", "shape": [1], "datatype": "FP32",
                                            "data": [1.0]}]}, "takes BYTES"),
    ("/v2/models/texts/infer", {"inputs": [{"name": "text", "shape": [2], "datatype": "BYTES",
                                            "data": ["a"]}]}, "needs 2 values"),
    ("/v2/models/texts/infer", {"inputs": [{"name": "text", "shape": [1], "datatype": "BYTES",
                                            "data": [5]}]}, "list of strings"),
])
def test_bad_text_requests_get_400(served, path, body, msg):
    _, _, c = served
    status, answer = c.request("POST", path, body)
    assert status == 400 and msg in answer["error"], answer


def test_shape_scalar_input_and_sigmoid_labels():
    model = _text_model(shape=(), units=1)
    model.class_names = ["no", "yes"]
    with ModelServer(model, port=0) as server:
        c = _Client(server)
        status, body = c.request("POST", "/predict", {"inputs": CORPUS})
        c.conn.close()
    p = model.predict(CORPUS, verbose=0)[:, 0]
    assert status == 200 and body["labels"] == ["yes" if v >= 0.5 else "no" for v in p]


def test_a_model_without_class_names_answers_no_labels():
    model = _text_model()
    with ModelServer(model, port=0) as server:
        c = _Client(server)
        status, body = c.request("POST", "/predict", {"inputs": CORPUS[:2]})
        health = c.request("GET", "/health")[1]
        c.conn.close()
    assert status == 200 and "labels" not in body and health["class_names"] is None


def test_class_names_must_match_the_output_width():
    model = _text_model()
    model.class_names = ["a", "b"]
    with pytest.raises(ValueError, match="2 class_names for an output 'probs' of width 3"):
        ModelServer(model, port=0)


def test_serve_command_loads_a_saved_text_model(tmp_path):
    import subprocess
    import sys
    model = _text_model()
    model.class_names = NAMES
    path = tmp_path / "text.nnet"
    model.save(path)
    proc = subprocess.Popen([sys.executable, "-m", "nanonet", "serve", str(path), "--port", "0",
                             "--threads", "1"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)
    try:
        line = proc.stdout.readline()
        port = int(line.split(" on http://127.0.0.1:")[1].split()[0])
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        conn.request("POST", "/predict", body=json.dumps({"instances": CORPUS[:1]}))
        body = json.loads(conn.getresponse().read())
        conn.close()
    finally:
        proc.terminate()
        proc.wait(timeout=30)
    assert body["labels"] == _want(model, CORPUS[:1])[1]
