"""nanonet writes its own files (.nnet zips): save / save_weights / ModelCheckpoint refuse
Keras's names (.keras, .h5, .weights.h5) with an error that says so, and write nothing."""
import os

import numpy as np
import pytest

import nanonet as nn
from nanonet import callbacks as C
from nanonet import layers as L


def _model():
    model = nn.Sequential([L.Input((3,)), L.Dense(2)])
    model.compile(optimizer="sgd", loss="mse")
    return model


@pytest.mark.parametrize("name,hint", [("m.keras", "m.nnet"), ("w.weights.h5", "w.nnet"),
                                       ("w.h5", "w.nnet"), ("M.KERAS", "M.nnet"),
                                       ("w.hdf5", "w.nnet")])
def test_keras_names_are_refused(tmp_path, name, hint):
    model = _model()
    path = str(tmp_path / name)
    for save, fn in ((model.save, "save"), (model.save_weights, "save_weights")):
        with pytest.raises(ValueError, match=rf"{fn}: .*{name}' names a Keras .* nanonet writes "
                                             r"its own format .*\.nnet.*"
                                             rf"{hint}' instead\. Keras \.keras and \.h5 files "
                                             "can be read, not written"):
            save(path)
    assert os.listdir(tmp_path) == []
    with pytest.raises(ValueError, match=r"ModelCheckpoint: .* names a Keras"):
        C.ModelCheckpoint(path)


def test_other_names_still_save(tmp_path):
    model = _model()
    model.save(tmp_path / "m.nnet")
    model.save_weights(tmp_path / "w.weights.nnet")
    model.save(tmp_path / "keras_model")
    C.ModelCheckpoint(str(tmp_path / "ck-{epoch}.nnet"))
    np.testing.assert_array_equal(nn.load_model(tmp_path / "keras_model").get_weights()[0],
                                  model.get_weights()[0])
