"""The model zoo: registry, exact architectures, input checks, metadata and recipes.

Tests parametrized over `list_models()` cover a newly registered model automatically.
Parameter counts and input-size probes build models on the meta device (no memory,
no init time); forward and backward passes run for real on the CPU, big models at
their smallest input only.
"""

from __future__ import annotations

import copy
import inspect
import pickle

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from cnnlab.errors import CnnlabError
from cnnlab.models import ModelInfo, check_input_size, create_model, list_models, model_info, register_model, registry
from cnnlab.models.recipes import RECIPE_KEYS

# The classic-models spec (shared/reference/classic-models.md): name -> (parameters with 1 input
# channel and 10 classes, default input size). It gives googlenet's and resnet18's counts only
# roughly ("≈6.0 M", "≈11.2 M"); their ModelInfo holds the exact count their docstrings derive.
SPEC = {
    "mlp-tiny": (6_442, 28),
    "cnn-tiny": (6_422, 28),
    "convnet": (9_098, 28),
    "inception-mini": (97_298, 28),
    "resnet-mini": (41_514, 28),
    "lenet": (61_706, 28),
    "alexnet": (46_764_746, 224),
    "vgg11": (128_806_154, 224),
    "nin": (1_992_166, 224),
    "nin-single": (1_769_112, 224),
    "googlenet": (None, 96),
    "resnet18": (None, 96),
}
ALL = list_models()
# A real forward and backward pass of these takes seconds: building their 4096-wide fc layers dominates.
BIG = 20_000_000


def by_cost(names: list[str]) -> list:
    """`names` as pytest params, the models over BIG parameters marked slow."""
    return [pytest.param(name, marks=pytest.mark.slow) if model_info(name).num_params > BIG else name for name in names]


def meta_model(name: str, in_channels: int = 1, num_classes: int = 10, **options) -> nn.Module:
    with torch.device("meta"):
        return create_model(name, in_channels, num_classes, **options)


def n_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def runs(model: nn.Module, size: int, in_channels: int = 1) -> bool:
    """Whether `model` (on meta) takes a (2, C, size, size) input."""
    try:
        model(torch.zeros(2, in_channels, size, size, device="meta"))
    except (RuntimeError, ValueError):
        return False
    return True


# ---- registry -----------------------------------------------------------------------


@pytest.mark.parametrize("name", SPEC)
def test_spec_models_are_registered_with_the_spec_numbers(name):
    params, input_size = SPEC[name]
    info = model_info(name)
    assert info.default_input_size == input_size
    if params is not None:
        assert info.num_params == params


def test_list_models_wildcards_and_natural_order(monkeypatch):
    # A fixed set of names, so that a model added to the zoo cannot change the answers.
    names = ["vgg11", "resnet-mini", "nin-single", "resnet18", "mlp-tiny", "nin", "cnn-tiny", "vgg2"]
    monkeypatch.setattr(registry, "_builders", dict.fromkeys(names))
    assert list_models("res*") == ["resnet18", "resnet-mini"]
    assert list_models("nin*") == ["nin", "nin-single"]
    assert list_models("*-tiny") == ["cnn-tiny", "mlp-tiny"]
    assert list_models("vgg1?") == ["vgg11"]
    assert list_models("nothing*") == []
    assert list_models("vgg*") == ["vgg2", "vgg11"]
    assert ALL == sorted(ALL, key=registry._natural_key)
    assert sorted(["vgg11", "vgg2", "vgg19"], key=registry._natural_key) == ["vgg2", "vgg11", "vgg19"]


def test_unknown_model_suggests_the_closest_name():
    with pytest.raises(CnnlabError, match=r"unknown model 'alexnt' \(did you mean 'alexnet'"):
        model_info("alexnt")
    with pytest.raises(CnnlabError, match=r"unknown model 'resnet-18'.*choose from: .*resnet18"):
        create_model("resnet-18")


def test_registering_a_name_twice_raises():
    def lenet(in_channels: int = 1, num_classes: int = 10) -> nn.Module:
        return nn.Linear(1, 1)

    with pytest.raises(CnnlabError, match="'lenet' is already registered by cnnlab.models.lenet.lenet"):
        register_model(lenet)


# Metadata for the throw-away models registered below; register_model reads it from this module.
model_infos = {
    "toy-net": ModelInfo(
        name="toy-net",
        family="toy",
        paper="none",
        default_input_size=4,
        min_input_size=2,
        options={"hidden": "hidden width"},
        reference_recipe={},
        reference_result="",
        fast_recipe={},
        num_params=0,
    ),
}


def test_register_model_adds_a_created_and_checked_model(monkeypatch):
    monkeypatch.setattr(registry, "_builders", dict(registry._builders))
    monkeypatch.setattr(registry, "_infos", dict(registry._infos))

    @register_model
    def toy_net(in_channels: int = 1, num_classes: int = 10, *, hidden: int = 3) -> nn.Module:
        return nn.Sequential(nn.Flatten(), nn.LazyLinear(hidden), nn.Linear(hidden, num_classes))

    assert "toy-net" in list_models("toy*")
    model = create_model("toy-net", 2, 5, hidden=7)
    assert model(torch.zeros(3, 2, 4, 4)).shape == (3, 5)
    with pytest.raises(CnnlabError, match=r"^toy-net takes inputs of 2x2 pixels or larger, got 1x1; pass resize=4$"):
        model(torch.zeros(3, 2, 1, 1))

    def no_metadata(in_channels: int = 1, num_classes: int = 10) -> nn.Module:
        return nn.Identity()

    with pytest.raises(CnnlabError, match=r"'no-metadata' has no metadata: add model_infos\['no-metadata'\]"):
        register_model(no_metadata)


def test_unknown_option_names_the_model_and_its_options():
    with pytest.raises(
        CnnlabError,
        match=r"unknown option 'widht' for model 'vgg11' \(did you mean 'width'\?\); "
        r"valid options: width, dropout, batch_norm",
    ):
        create_model("vgg11", widht=4)
    with pytest.raises(CnnlabError, match="unknown option 'dropout' for model 'lenet'.*valid options: batch_norm"):
        create_model("lenet", dropout=0.1)
    with pytest.raises(CnnlabError, match="unknown option 'batch_norm' for model 'resnet18'; it takes no options"):
        create_model("resnet18", batch_norm=True)


@pytest.mark.parametrize(
    "name, options, message",
    [
        ("alexnet", {"dropout": 1.5}, r"option 'dropout' of model 'alexnet' must be a number in \[0, 1\), got 1.5"),
        ("convnet", {"batch_norm": "yes"}, "option 'batch_norm' of model 'convnet' must be true or false, got 'yes'"),
        ("vgg11", {"width": 0}, "option 'width' of model 'vgg11' must be a positive integer, got 0"),
        ("vgg11", {"width": 128}, "option 'width' of VGG must be between 1 and 64"),
    ],
)
def test_bad_option_values_are_named(name, options, message):
    with pytest.raises(CnnlabError, match=message):
        meta_model(name, **options)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"in_channels": 0}, "in_channels must be a positive integer, got 0"),
        ({"num_classes": 2.5}, "num_classes must be a positive integer, got 2.5"),
    ],
)
def test_bad_channel_and_class_counts(kwargs, message):
    with pytest.raises(CnnlabError, match=message):
        create_model("lenet", **kwargs)


# ---- architectures ------------------------------------------------------------------


@pytest.mark.parametrize("name", ALL)
def test_num_params_is_what_the_builder_gives(name):
    """ModelInfo.num_params counts the model built for its reference dataset with the default options."""
    from cnnlab.data.catalog import get_spec

    info = model_info(name)
    dataset = get_spec(info.reference_recipe["dataset"])
    assert (dataset.channels, len(dataset.classes)) == (1, 10)  # the builder defaults num_params assumes
    assert n_params(meta_model(name, dataset.channels, len(dataset.classes))) == info.num_params


def test_vgg11_width_4_parameter_count():
    assert n_params(meta_model("vgg11", width=4)) == 43_093_322


@pytest.mark.parametrize("name", ALL)
def test_input_size_range_is_what_the_layers_accept(name):
    """min (and max) input size are honest: the bare layers, without the input check, agree."""
    info = model_info(name)
    with torch.device("meta"):
        bare = registry._builders[name](1, 10).eval()
    assert runs(bare, info.min_input_size)
    if info.min_input_size > 1:
        assert not runs(bare, info.min_input_size - 1)
    if info.max_input_size is None:
        assert runs(bare, 2 * info.default_input_size)
    else:
        assert runs(bare, info.max_input_size)
        assert not runs(bare, info.max_input_size + 1)


@pytest.mark.parametrize("name", by_cost(ALL))
def test_forward_shape_and_gradients_reach_every_parameter(name):
    torch.manual_seed(0)
    info = model_info(name)
    model = create_model(name).train()
    # models with a size band: their default and largest size; the others: their smallest only.
    sizes = [info.default_input_size, info.max_input_size] if info.max_input_size else [info.min_input_size]
    for size in sizes:
        out = model(torch.randn(2, 1, size, size))
        assert out.shape == (2, 10)
        assert torch.isfinite(out).all()
    F.cross_entropy(out, torch.tensor([3, 7])).backward()
    for path, param in model.named_parameters():
        assert param.grad is not None, f"no gradient reaches {path}"
        assert torch.isfinite(param.grad).all(), path
    assert sum(p.grad.abs().sum() for p in model.parameters()) > 0


@pytest.mark.parametrize("name", by_cost(ALL))
def test_three_channels_and_100_classes_build_and_run(name):
    model = create_model(name, in_channels=3, num_classes=100).eval()
    with torch.no_grad():
        out = model(torch.randn(2, 3, model_info(name).min_input_size, model_info(name).min_input_size))
    assert out.shape == (2, 100)


def test_log_softmax_outputs_of_the_tiny_pair():
    for name in ("mlp-tiny", "cnn-tiny"):
        out = create_model(name)(torch.randn(4, 1, 28, 28))
        assert torch.allclose(out.exp().sum(1), torch.ones(4), atol=1e-5)


def test_convnet_default_init_is_gaussian_001_with_zero_bias():
    torch.manual_seed(0)
    model = create_model("convnet")
    linear = model.head
    assert abs(linear.weight.std().item() - 0.01) < 0.0005
    for module in model.modules():
        if isinstance(module, (nn.Conv2d, nn.Linear)):
            assert torch.count_nonzero(module.bias) == 0


def _relu_before_pool(model: nn.Module) -> nn.Module:
    """A copy of `model` whose (MaxPool2d, ReLU) pairs run in the other order."""
    model = copy.deepcopy(model)
    for module in model.modules():
        if isinstance(module, nn.Sequential):
            names = list(module._modules)
            for a, b in zip(names, names[1:]):
                if isinstance(module._modules[a], nn.MaxPool2d) and isinstance(module._modules[b], nn.ReLU):
                    module._modules[a], module._modules[b] = module._modules[b], module._modules[a]
    return model


def _pools_before_relu(name: str) -> bool:
    features = getattr(meta_model(name), "features", None)
    return features is not None and [type(m) for m in features][:3] == [nn.Conv2d, nn.MaxPool2d, nn.ReLU]


@pytest.mark.parametrize("name", [n for n in ALL if _pools_before_relu(n)])
def test_pooling_before_relu_is_the_reference_function_and_gradient(name):
    torch.manual_seed(0)
    model = create_model(name)
    reference = _relu_before_pool(model)
    assert [type(m) for m in model.features][:3] == [nn.Conv2d, nn.MaxPool2d, nn.ReLU]  # the cheaper order
    assert [type(m) for m in reference.features][:3] == [nn.Conv2d, nn.ReLU, nn.MaxPool2d]
    x = torch.randn(8, 1, 28, 28)
    y = torch.randint(0, 10, (8,))
    for net in (model, reference):
        F.cross_entropy(net(x), y).backward()
    assert torch.equal(model(x), reference(x))
    for (name_a, a), (name_b, b) in zip(model.named_parameters(), reference.named_parameters()):
        assert name_a == name_b and torch.equal(a.grad, b.grad), name_a


def test_defaults_reproduce_the_reference_layers():
    alexnet = meta_model("alexnet")
    convs = [m for m in alexnet.modules() if isinstance(m, nn.Conv2d)]
    assert [(c.out_channels, c.kernel_size[0], c.stride[0], c.padding[0]) for c in convs] == [
        (96, 11, 4, 1),
        (256, 5, 1, 2),
        (384, 3, 1, 1),
        (384, 3, 1, 1),
        (256, 3, 1, 1),
    ]
    assert [m.p for m in alexnet.modules() if isinstance(m, nn.Dropout)] == [0.5, 0.5]
    assert not any(isinstance(m, nn.BatchNorm2d) for m in alexnet.modules())
    lenet = meta_model("lenet")
    assert sum(isinstance(m, nn.Sigmoid) for m in lenet.modules()) == 4
    assert sum(isinstance(m, nn.AvgPool2d) for m in lenet.modules()) == 2
    nin = meta_model("nin")
    assert sum(isinstance(m, nn.Conv2d) for m in nin.modules()) == 12
    assert sum(isinstance(m, nn.ReLU) for m in nin.modules()) == 11  # none after the last conv
    assert sum(isinstance(m, nn.Conv2d) for m in meta_model("nin-single").modules()) == 8
    resnet18 = meta_model("resnet18")
    assert sum(isinstance(m, nn.BatchNorm2d) for m in resnet18.modules()) == 1 + 8 * 2
    assert sum(isinstance(m, nn.Conv2d) and m.kernel_size == (1, 1) for m in resnet18.modules()) == 3


@pytest.mark.parametrize("name", [n for n in ALL if "batch_norm" in model_info(n).options])
def test_batch_norm_option_adds_batch_norm(name):
    assert not any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in meta_model(name).modules())
    assert any(isinstance(m, nn.BatchNorm2d) for m in meta_model(name, batch_norm=True).modules())


@pytest.mark.parametrize("name", [n for n in ALL if "dropout" in model_info(n).options])
def test_dropout_option_sets_every_dropout(name):
    rates = {m.p for m in meta_model(name, dropout=0.2).modules() if isinstance(m, nn.Dropout)}
    assert rates == {0.2}


# ---- the input check ----------------------------------------------------------------


def test_too_small_input_fails_before_any_layer_runs():
    model = create_model("alexnet")
    ran = []
    model.features[0].register_forward_pre_hook(lambda module, args: ran.append(module))
    with pytest.raises(CnnlabError) as err:
        model(torch.zeros(1, 1, 28, 28))
    assert str(err.value) == "alexnet takes inputs of 65x65 pixels or larger, got 28x28; pass resize=224"
    assert ran == []


@pytest.mark.parametrize("name", [n for n in ALL if model_info(n).min_input_size > 1])
def test_too_small_message_names_model_size_and_resize(name):
    info = model_info(name)
    low = info.min_input_size
    with pytest.raises(
        CnnlabError,
        match=f"^{name} takes inputs of (exactly )?{low}x{low} .*"
        f"got {low - 1}x{low - 1}; pass resize={info.default_input_size}$",
    ):
        meta_model(name)(torch.zeros(1, 1, low - 1, low - 1, device="meta"))


def test_too_large_input_for_a_fixed_linear_layer():
    with pytest.raises(
        CnnlabError,
        match=r"^mlp-tiny takes inputs of exactly 28x28 pixels, got 32x32; "
        r"pass resize=28$",
    ):
        create_model("mlp-tiny")(torch.zeros(1, 1, 32, 32))


@pytest.mark.parametrize(
    "name, size, message",
    [
        ("alexnet", 64, "alexnet takes inputs of 65x65 pixels or larger, got 64x64; pass resize=224"),
        ("lenet", 32, "lenet takes inputs of 28x28 to 31x31 pixels, got 32x32; pass resize=28"),
        ("mlp-tiny", (28, 27), "mlp-tiny takes inputs of exactly 28x28 pixels, got 28x27; pass resize=28"),
        ("lenet", (31, 32), "lenet takes inputs of 28x28 to 31x31 pixels, got 31x32; pass resize=28"),
    ],
)
def test_check_input_size_says_model_range_and_resize(name, size, message):
    with pytest.raises(CnnlabError) as err:
        check_input_size(name, size)
    assert str(err.value) == message


@pytest.mark.parametrize("name", ALL)
def test_check_input_size_accepts_the_stated_range(name):
    info = model_info(name)
    for size in {info.min_input_size, info.default_input_size, info.max_input_size or 2 * info.default_input_size}:
        check_input_size(name, size)
        check_input_size(name, (size, size))


def test_wrong_channel_count_and_rank_are_one_line_errors():
    with pytest.raises(
        CnnlabError,
        match=r"^lenet was built for 1 input channel\(s\), got 3; "
        r"create it with in_channels=3$",
    ):
        create_model("lenet")(torch.zeros(1, 3, 28, 28))
    with pytest.raises(CnnlabError, match=r"expects a batch of images shaped \(N, C, H, W\), got \(28, 28\)"):
        create_model("lenet")(torch.zeros(28, 28))


def test_checked_models_copy_and_pickle():
    model = create_model("cnn-tiny")
    for clone in (copy.deepcopy(model), pickle.loads(pickle.dumps(model))):
        assert clone(torch.zeros(1, 1, 28, 28)).shape == (1, 10)
        with pytest.raises(CnnlabError, match="takes inputs of 28x28 to 31x31 pixels, got 20x20"):
            clone(torch.zeros(1, 1, 20, 20))


# ---- metadata and recipes -----------------------------------------------------------


@pytest.mark.parametrize("name", ALL)
def test_metadata_is_complete_and_consistent(name):
    from cnnlab.data.catalog import get_spec
    from cnnlab.runfolder.config import TrainConfig

    info = model_info(name)
    assert info.name == name and info.family and info.paper and info.reference_result
    assert info.min_input_size <= info.default_input_size <= (info.max_input_size or info.default_input_size)
    options = {
        p.name
        for p in inspect.signature(registry._builders[name]).parameters.values()
        if p.kind is inspect.Parameter.KEYWORD_ONLY
    }
    assert set(info.options) == options and all(info.options.values())
    for recipe in (info.reference_recipe, info.fast_recipe):
        assert set(recipe) <= set(RECIPE_KEYS) <= set(TrainConfig.field_names())
        assert set(recipe["model_options"]) <= options
        TrainConfig(model=name, **recipe).validate()
    # the reference upscales to the size the model was designed for, unless the dataset has it already
    dataset_size = get_spec(info.reference_recipe["dataset"]).image_size
    large = info.default_input_size != dataset_size
    assert info.reference_recipe["resize"] == (info.default_input_size if large else None)
    if large:
        assert info.fast_recipe["resize"] == max(64, info.min_input_size)
    if "batch_norm" in info.options:
        assert info.fast_recipe["model_options"]["batch_norm"] is True
    assert info.fast_recipe["schedule"] == "onecycle"


def test_reference_recipes_transcribe_the_spec():
    def picked(name, *keys):
        recipe = model_info(name).reference_recipe
        return {key: recipe[key] for key in keys}

    keys = ("dataset", "batch_size", "optimizer", "lr", "momentum", "epochs", "normalize")
    assert (
        picked("mlp-tiny", *keys)
        == picked("cnn-tiny", *keys)
        == dict(
            dataset="mnist", batch_size=64, optimizer="sgd", lr=0.01, momentum=0.5, epochs=1, normalize="0.1307,0.3081"
        )
    )
    assert picked("convnet", *keys, "seed") == dict(
        dataset="mnist", batch_size=128, optimizer="sgd", lr=0.05, momentum=0.0, epochs=10, normalize="none", seed=1
    )
    assert picked("lenet", *keys, "init") == dict(
        dataset="fashion-mnist",
        batch_size=256,
        optimizer="sgd",
        lr=0.9,
        momentum=0.0,
        epochs=10,
        normalize="none",
        init="xavier",
    )
    assert picked("nin-single", *keys, "init", "resize") == dict(
        dataset="fashion-mnist",
        batch_size=64,
        optimizer="sgd",
        lr=0.1,
        momentum=0.0,
        epochs=10,
        normalize="0.5,0.5",
        init="xavier",
        resize=224,
    )
    assert picked("vgg11", "batch_size", "lr", "epochs", "model_options") == dict(
        batch_size=128, lr=0.05, epochs=10, model_options={"width": 4}
    )
    assert picked("resnet18", "batch_size", "lr", "resize") == dict(batch_size=256, lr=0.05, resize=96)
    for name in ("alexnet", "nin", "nin-single", "lenet"):
        assert model_info(name).reference_recipe["init"] == "xavier"
