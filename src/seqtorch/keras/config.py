"""Keras' model config -> a list of layer specs, every option checked against what seqtorch translates.

A spec holds only what decides the computation (sizes, activations, flags), in seqtorch's terms. Each
option of a layer's config is one of: *used* (in the spec); *ignored*, because it cannot change the
function of a model whose weights are loaded (initializers, ``implementation``, ``unroll``, the
layer's ``name``); or *fixed*, allowed only at the one value seqtorch translates (``stateful=False``, no
regularizers, ``mask_zero=False``, ...). A fixed option at another value, an option the importer does
not know, and a layer class it does not know raise :class:`UnsupportedKerasError` naming the layer,
its class, the option and the value. A value of a type Keras never writes there (``units: "six"``, a
layer entry that is not an object), or a required option missing, means a damaged config: a
:class:`KerasFileError`. Values are shown cut short in messages (a damaged file can hold megabytes).

``recurrent_activation="hard_sigmoid"`` names two functions: Keras 2's ``clip(0.2 x + 0.5, 0, 1)``
(seqtorch's ``"hard_sigmoid_keras2"``) and Keras 3's ``clip(x / 6 + 0.5, 0, 1)`` (torch's
``F.hardsigmoid``, seqtorch's ``"hardsigmoid"``); the version that wrote the file decides.
"""

from __future__ import annotations

from dataclasses import dataclass

from .errors import KerasFileError, UnsupportedKerasError

RECURRENT_CLASSES = {"SimpleRNN": "rnn", "LSTM": "lstm", "GRU": "gru"}  # Keras class -> seqtorch cell family
DENSE_ACTIVATIONS = ("linear", "sigmoid", "tanh", "relu", "softmax")
MERGE_MODES = ("concat", "sum", "mul", "ave", None)

_REQUIRED = object()
# Options that cannot change the function of a model with its weights loaded: they are skipped.
_IGNORED = {"name", "seed", "unit_forget_bias", "implementation", "unroll", "use_cudnn", "input_length",
            "batch_input_shape", "lora_alpha"}
# Options of the masking machinery: a recurrent layer's masked outputs follow Keras' rule for its place (a
# Bidirectional's are zeros, a lone layer repeats its last output; seqtorch.keras.modules.KerasRecurrent).
_IGNORED |= {"zero_output_for_mask"}


@dataclass(frozen=True)
class InputSpec:
    """Keras' InputLayer: the input's shape (None for unknown sizes) and dtype ("int32", "float32")."""

    name: str
    shape: tuple | None
    dtype: str | None


@dataclass(frozen=True)
class EmbeddingSpec:
    name: str
    input_dim: int
    output_dim: int
    trainable: bool = True
    mask_zero: bool = False  # id 0 is padding: the layers after it skip those steps


@dataclass(frozen=True)
class RecurrentSpec:
    """SimpleRNN, LSTM or GRU. ``activation``/``recurrent_activation`` are seqtorch's names;
    ``reset_after`` is the GRU's (True for the other two, where it means nothing)."""

    class_name: str
    name: str
    units: int
    activation: str = "tanh"
    recurrent_activation: str = "sigmoid"
    use_bias: bool = True
    return_sequences: bool = False
    go_backwards: bool = False
    dropout: float = 0.0
    recurrent_dropout: float = 0.0
    reset_after: bool = True
    trainable: bool = True
    stateful: bool = False  # carries its state from one batch to the next (reset_states() starts over)

    @property
    def family(self) -> str:
        return RECURRENT_CLASSES[self.class_name]


@dataclass(frozen=True)
class BidirectionalSpec:
    """Bidirectional(layer): the backward copy mirrors ``layer`` (checked), ``merge_mode`` None returns both."""

    name: str
    layer: RecurrentSpec
    merge_mode: str | None = "concat"
    trainable: bool = True

    @property
    def return_sequences(self) -> bool:
        return self.layer.return_sequences


@dataclass(frozen=True)
class DenseSpec:
    name: str
    units: int
    activation: str = "linear"
    use_bias: bool = True
    trainable: bool = True


@dataclass(frozen=True)
class DropoutSpec:
    name: str
    rate: float


@dataclass(frozen=True)
class FlattenSpec:
    name: str


LayerSpec = EmbeddingSpec | RecurrentSpec | BidirectionalSpec | DenseSpec | DropoutSpec | FlattenSpec
WEIGHT_SPECS = (EmbeddingSpec, RecurrentSpec, BidirectionalSpec, DenseSpec)


@dataclass(frozen=True)
class ModelSpec:
    name: str
    input: InputSpec | None
    layers: list


def show(value, width: int = 60) -> str:
    """``repr(value)`` for a message, at most ``width`` characters (an int of thousands of digits
    has no repr at all: Python refuses to convert it)."""
    try:
        text = repr(value)
    except ValueError:
        text = f"<an int of {value.bit_length()} bits>"
    return text if len(text) <= width else text[:width - 3] + "..."


def keras_major(version: str | None) -> int | None:
    """3 for "3.15.1", 2 for "2.13.1"; None when unknown or unreadable."""
    head = (version or "").split(".")[0]
    return int(head) if head.isdigit() and len(head) < 4 else None


def parse_model_config(config: dict, keras_version: str | None, path: str) -> ModelSpec:
    """The specs of a Sequential model's config (``{"class_name": "Sequential", "config": ...}``), layers
    in order. ``keras_version`` (None: unknown) decides what ``hard_sigmoid`` means."""
    major = keras_major(keras_version)
    if major is not None and major < 2:
        raise UnsupportedKerasError(f"{path}: written by Keras {keras_version}; only Keras 2 and 3 files are read")
    class_name = config.get("class_name")
    if not isinstance(class_name, str):
        raise KerasFileError(f"{path}: the model config's class_name is {show(class_name)}, not a class name")
    if class_name != "Sequential":
        raise UnsupportedKerasError(f"{path}: the model is a {show(class_name)} model; only Sequential models "
                                    f"are translated (build the module by hand and use load_weights)")
    body = config.get("config")
    # Keras <= 2.2.2 stored the layer list itself; later versions {"name": ..., "layers": [...]}.
    entries = body if isinstance(body, list) else body.get("layers") if isinstance(body, dict) else None
    if not isinstance(entries, list):
        raise KerasFileError(f"{path}: the Sequential config holds no layer list (found {show(body)})")
    name = body.get("name") if isinstance(body, dict) else None
    name = name if isinstance(name, str) else "sequential"
    reader = _LayerReader(path, major, keras_version)
    input_spec, layers = None, []
    for index, entry in enumerate(entries):
        spec = reader.layer(entry)
        if isinstance(spec, InputSpec):
            if index != 0:
                raise UnsupportedKerasError(f"{path}: an InputLayer ({spec.name!r}) after the first layer")
            input_spec = spec
        else:
            layers.append(spec)
    _check_masking(layers, path)
    for spec in layers[:-1]:
        if isinstance(spec, BidirectionalSpec) and spec.merge_mode is None:
            raise UnsupportedKerasError(
                f"{path}: layer {spec.name!r} (Bidirectional): merge_mode=None returns two tensors, which only "
                f"the last layer of a Sequential model may do")
    return ModelSpec(name, input_spec, layers)


def _check_masking(layers: list, path: str) -> None:
    """Keras passes an Embedding's ``mask_zero`` mask on through the layers that support masking (recurrent
    layers, Dense, Dropout) until a recurrent layer returns one step; a Flatten cannot take it (Keras fails)."""
    masked = False
    for spec in layers:
        if isinstance(spec, EmbeddingSpec):
            masked = spec.mask_zero
        elif isinstance(spec, (RecurrentSpec, BidirectionalSpec)):
            layer = spec.layer if isinstance(spec, BidirectionalSpec) else spec
            masked = masked and layer.return_sequences
        elif isinstance(spec, FlattenSpec) and masked:
            raise UnsupportedKerasError(f"{path}: layer {spec.name!r} (Flatten) after an Embedding with mask_zero=True: "
                                        f"Flatten does not support masking")


class _Options:
    """One layer's config dict; records what was read so that :meth:`finish` can refuse the rest."""

    def __init__(self, where: str, config: dict) -> None:
        self.where = where  # "path: layer 'lstm' (LSTM)"
        self.config = config
        self.read: set[str] = set()

    def get(self, key: str, default=_REQUIRED):
        self.read.add(key)
        if key not in self.config:
            if default is _REQUIRED:
                raise KerasFileError(f"{self.where}: the config has no {key!r}, which Keras always writes")
            return default
        return self.config[key]

    def fixed(self, key: str, allowed, why: str) -> None:
        """The option may only be absent or equal to ``allowed``."""
        value = self.get(key, allowed)
        if allowed is not None and not isinstance(value, type(allowed)):
            self.damaged(key, value, type(allowed).__name__)
        if value != allowed or type(value) is not type(allowed):
            self.refuse(key, value, why)

    def number(self, key: str, default: float, low: float, high: float) -> float:
        """A number in [low, high)."""
        value = self.get(key, default)
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            self.damaged(key, value, "a number")
        if not low <= value < high:
            self.refuse(key, value, f"expected a number in [{low}, {high})")
        return float(value)

    def integer(self, key: str) -> int:
        value = self.get(key)
        if isinstance(value, bool) or not isinstance(value, int):
            self.damaged(key, value, "an int")
        if not 1 <= value < 2**31:
            self.refuse(key, value, "expected an int in [1, 2**31)")
        return value

    def flag(self, key: str, default: bool) -> bool:
        value = self.get(key, default)
        if not isinstance(value, bool):
            self.damaged(key, value, "true or false")
        return value

    def choice(self, key: str, default, choices: tuple) -> str:
        """An activation-like option: a name (or Keras 3's ``{"class_name": "function", "config": name}``)."""
        value = self.get(key, default)
        name = value.get("config") if isinstance(value, dict) and value.get("class_name") == "function" else value
        if not (name is None or isinstance(name, str) or isinstance(value, dict)):
            self.damaged(key, value, "a name")
        if name not in choices:
            self.refuse(key, value, f"supported: {choices}")
        return name

    def refuse(self, key: str, value, why: str):
        raise UnsupportedKerasError(f"{self.where}: option {key}={show(value)} is not supported ({why})")

    def damaged(self, key: str, value, expected: str):
        raise KerasFileError(f"{self.where}: option {key}={show(value)} is not a value Keras writes there "
                             f"(expected {expected}): the config is damaged")

    def finish(self) -> None:
        """Check the options nobody read: ignorable ones pass, fixed kinds are checked, others refused."""
        for key, value in self.config.items():
            if key in self.read or key in _IGNORED or key.endswith("_initializer"):
                continue
            if key.endswith(("_regularizer", "_constraint")):
                if value is not None:
                    self.refuse(key, value, "training-time penalties and constraints are not carried over")
                continue
            if key == "dtype":
                policy = value.get("config") if isinstance(value, dict) else value
                policy = policy.get("name") if isinstance(policy, dict) else policy
                if policy not in ("float32", None):
                    self.refuse(key, policy, "only float32 models are translated")
                continue
            raise UnsupportedKerasError(f"{self.where}: unknown option {key}={show(value)} (not translated; "
                                        f"it might change the layer's function)")


class _LayerReader:
    """Turns one layer entry of a config into its spec; ``major`` is the Keras major version or None."""

    def __init__(self, path: str, major: int | None, version: str | None) -> None:
        self.path = path
        self.major = major
        self.version = version

    def layer(self, entry: dict):
        if not isinstance(entry, dict) or not isinstance(entry.get("class_name"), str):
            raise KerasFileError(f"{self.path}: a layer entry without a class_name: {show(entry)}")
        class_name, config = entry["class_name"], entry.get("config") or {}
        if not isinstance(config, dict):
            raise KerasFileError(f"{self.path}: layer {show(class_name)}'s config is {show(config)}, not an object")
        where = f"{self.path}: layer {show(config.get('name'))} ({class_name[:40]})"
        options = _Options(where, config)
        if class_name in RECURRENT_CLASSES:
            spec = self._recurrent(class_name, options)
        else:
            build = {"InputLayer": self._input, "Embedding": self._embedding, "Bidirectional": self._bidirectional,
                     "Dense": self._dense, "Dropout": self._dropout, "Flatten": self._flatten}.get(class_name)
            if build is None:
                raise UnsupportedKerasError(
                    f"{where}: layer class {show(class_name)} is not supported (supported: InputLayer, Embedding, "
                    f"{', '.join(RECURRENT_CLASSES)}, Bidirectional, Dense, Dropout, Flatten)")
            spec = build(options)
        options.finish()
        return spec

    def _name(self, options: _Options) -> str:
        name = options.get("name", "")
        return name if isinstance(name, str) else show(name)

    def _trainable(self, options: _Options) -> bool:
        return options.flag("trainable", True)

    def _input(self, options: _Options) -> InputSpec:
        shape = options.get("batch_shape", None)
        if shape is None:
            shape = options.get("batch_input_shape", None)
        if shape is not None and not (isinstance(shape, list) and all(
                d is None or (type(d) is int and d >= 0) for d in shape)):
            options.damaged("batch_shape", shape, "a list of sizes (ints or null)")
        options.fixed("sparse", False, "sparse inputs")
        options.fixed("ragged", False, "ragged inputs")
        options.fixed("optional", False, "optional inputs")
        options.get("input_tensor", None)
        return InputSpec(self._name(options), None if shape is None else tuple(shape),
                         options.get("dtype", None))

    def _embedding(self, options: _Options) -> EmbeddingSpec:
        options.fixed("lora_rank", None, "LoRA adapters")
        options.fixed("quantization_config", None, "quantized layers")
        return EmbeddingSpec(self._name(options), options.integer("input_dim"), options.integer("output_dim"),
                             self._trainable(options), options.flag("mask_zero", False))

    def _recurrent(self, class_name: str, options: _Options) -> RecurrentSpec:
        options.fixed("return_state", False, "a Sequential model passes one tensor on")
        options.fixed("time_major", False, "time-major inputs")
        activation = options.choice("activation", "tanh", ("tanh", "relu"))
        recurrent_activation = "sigmoid"
        if class_name != "SimpleRNN":
            recurrent_activation = self._recurrent_activation(options)
        reset_after = True
        if class_name == "GRU":
            # Absent only in configs older than the option (Keras < 2.1.3), whose GRU is reset-before.
            reset_after = options.flag("reset_after", False)
        return RecurrentSpec(
            class_name, self._name(options), options.integer("units"), activation=activation,
            recurrent_activation=recurrent_activation, use_bias=options.flag("use_bias", True),
            return_sequences=options.flag("return_sequences", False),
            go_backwards=options.flag("go_backwards", False),
            dropout=options.number("dropout", 0.0, 0.0, 1.0),
            recurrent_dropout=options.number("recurrent_dropout", 0.0, 0.0, 1.0), reset_after=reset_after,
            trainable=self._trainable(options), stateful=options.flag("stateful", False))

    def _recurrent_activation(self, options: _Options) -> str:
        name = options.choice("recurrent_activation", "sigmoid", ("sigmoid", "hard_sigmoid"))
        if name == "sigmoid":
            return name
        if self.major is None:
            options.refuse("recurrent_activation", name,
                           "Keras 2's hard_sigmoid is clip(0.2 x + 0.5, 0, 1), Keras 3's clip(x / 6 + 0.5, 0, 1), "
                           "and the file does not record which Keras wrote it")
        return "hard_sigmoid_keras2" if self.major == 2 else "hardsigmoid"

    def _bidirectional(self, options: _Options) -> BidirectionalSpec:
        where = options.where
        merge_mode = options.get("merge_mode", "concat")
        if merge_mode not in MERGE_MODES:
            options.refuse("merge_mode", merge_mode, f"supported: {MERGE_MODES}")
        forward = self._wrapped(options.get("layer"), where, "layer")
        if forward.go_backwards:
            options.refuse("layer.go_backwards", True, "a Bidirectional whose forward layer runs backwards")
        backward_entry = options.get("backward_layer", None)
        if backward_entry is not None:
            backward = self._wrapped(backward_entry, where, "backward_layer")
            if not backward.go_backwards:
                options.refuse("backward_layer.go_backwards", False,
                               "Keras runs the backward layer with go_backwards=True")
            for field in RecurrentSpec.__dataclass_fields__:
                if field in ("name", "go_backwards"):
                    continue
                if getattr(backward, field) != getattr(forward, field):
                    options.refuse(f"backward_layer.{field}", getattr(backward, field),
                                   f"the backward layer must mirror the forward layer, whose {field} is "
                                   f"{getattr(forward, field)!r}")
        return BidirectionalSpec(self._name(options), forward, merge_mode, self._trainable(options))

    def _wrapped(self, entry, where: str, key: str) -> RecurrentSpec:
        class_name = entry.get("class_name") if isinstance(entry, dict) else None
        if class_name not in RECURRENT_CLASSES:
            raise UnsupportedKerasError(f"{where}: option {key} wraps {show(class_name)}; supported: "
                                        f"{tuple(RECURRENT_CLASSES)}")
        return self.layer(entry)

    def _dense(self, options: _Options) -> DenseSpec:
        options.fixed("lora_rank", None, "LoRA adapters")
        options.fixed("quantization_config", None, "quantized layers")
        return DenseSpec(self._name(options), options.integer("units"),
                         options.choice("activation", "linear", DENSE_ACTIVATIONS),
                         options.flag("use_bias", True), self._trainable(options))

    def _dropout(self, options: _Options) -> DropoutSpec:
        options.fixed("noise_shape", None, "dropout masks shared along axes")
        options.get("trainable", True)
        return DropoutSpec(self._name(options), options.number("rate", 0.0, 0.0, 1.0))

    def _flatten(self, options: _Options) -> FlattenSpec:
        data_format = options.get("data_format", None)
        if data_format not in (None, "channels_last"):
            options.refuse("data_format", data_format, "only channels_last")
        options.get("trainable", True)
        return FlattenSpec(self._name(options))
