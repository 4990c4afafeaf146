"""Models a user might bring, imported by path 'user_models:factory' in tests."""
import numpy as np
import torch
import torch.nn as nn


def tiny_linear(input_shape, num_classes):
    """A user's own model: takes the shape and class count it is given."""
    width = 1
    for s in input_shape:
        width *= s
    return nn.Sequential(nn.Flatten(), nn.Linear(width, num_classes))


def needs_width(input_shape, num_classes, width):
    """A user factory whose argument has no default."""
    return nn.Sequential(nn.Flatten(), nn.Linear(int(np.prod(input_shape)), width), nn.Linear(width, num_classes))


def five_class_model(input_shape):
    """A user's model hard-wired to 5 classes: it must be refused on a 10-class dataset."""
    width = 1
    for s in input_shape:
        width *= s
    return nn.Sequential(nn.Flatten(), nn.Linear(width, 5))


def not_a_module(num_classes):
    return "oops"


class NanAfter(nn.Module):
    """Trains normally for `good_steps` training forwards, then returns NaN: a run that diverges mid-way."""

    def __init__(self, input_shape, num_classes, good_steps=4):
        super().__init__()
        width = 1
        for s in input_shape:
            width *= s
        self.body = nn.Sequential(nn.Flatten(), nn.Linear(width, num_classes))
        self.good_steps, self.calls = good_steps, 0

    def forward(self, x):
        out = self.body(x)
        if self.training:
            self.calls += 1
            if self.calls > self.good_steps:
                return out * float("nan")
        return out


def nan_after_one_epoch(input_shape, num_classes):
    return NanAfter(input_shape, num_classes, good_steps=4)


def unexportable(input_shape, num_classes):
    """Trains in eager PyTorch, but torch.onnx has no translation for kthvalue: its export must fail in one line."""

    class KthValue(nn.Module):
        def __init__(self):
            super().__init__()
            self.body = tiny_linear(input_shape, num_classes)

        def forward(self, x):
            flat = x.flatten(1)
            return self.body((flat - flat.kthvalue(2, dim=1, keepdim=True).values).view_as(x))

    return KthValue()


def returns_tuple(input_shape, num_classes):
    """A model that returns (logits, features), as many research models do."""

    class Pair(nn.Module):
        def __init__(self):
            super().__init__()
            self.body = tiny_linear(input_shape, num_classes)

        def forward(self, x):
            out = self.body(x)
            return out, x

    return Pair()


def no_parameters(input_shape, num_classes):
    """Pools the input to one value per class: nothing to train."""
    return nn.Sequential(nn.Flatten(), nn.AdaptiveAvgPool1d(num_classes))


def sorting_student(input_shape, num_classes):
    """Sorts its input with torch.sort: TFLite's converter keeps it (STABLEHLO_SORT), TFLite Micro has no kernel."""

    class Sorted(nn.Module):
        def __init__(self):
            super().__init__()
            self.body = tiny_linear(input_shape, num_classes)

        def forward(self, x):
            return self.body(torch.sort(x.flatten(1), dim=1).values.view_as(x))

    return Sorted()


def numpy_student(input_shape, num_classes):
    """Leaves torch for numpy in its forward: it trains, but no exporter can trace it."""

    class ViaNumpy(nn.Module):
        def __init__(self):
            super().__init__()
            self.body = tiny_linear(input_shape, num_classes)

        def forward(self, x):
            return self.body(torch.from_numpy(np.sort(x.detach().cpu().numpy(), axis=-1)))

    return ViaNumpy()


class ShortGRU(nn.Module):
    """A GRU over the input averaged in windows of 8 steps: an export unrolls a GRU one cell per step, so MNIST-1D's
    40 steps cost about 10 s an export, and these 5 about 1."""

    def __init__(self, input_shape, num_classes):
        super().__init__()
        self.pool = nn.AvgPool1d(8)
        self.rnn = nn.GRU(input_shape[0], 8, batch_first=True)
        self.head = nn.Linear(16, num_classes)

    def forward(self, x):
        out, _ = self.rnn(self.pool(x).transpose(1, 2))
        return self.head(torch.cat([out.mean(dim=1), out[:, -1]], dim=1))


def gru_student(input_shape, num_classes):
    """A small GRU: TFLite's int8 quantizer fails on it, so no microcontroller file can be made."""
    return ShortGRU(input_shape, num_classes)


def sorts_once_trained(input_shape, num_classes):
    """Exports like a linear model until it has trained, then sorts its input: the check before training passes,
    the trained student's export cannot (a graph that changes with training)."""

    class SortsOnceTrained(nn.Module):
        def __init__(self):
            super().__init__()
            self.body = tiny_linear(input_shape, num_classes)
            self.trained = False

        def forward(self, x):
            if self.training:
                self.trained = True
            elif self.trained:
                x = torch.sort(x.flatten(1), dim=1).values.view_as(x)
            return self.body(x)

    return SortsOnceTrained()


def bn_without_running_stats(input_shape, num_classes):
    """A conv whose BatchNorm keeps no running statistics: it normalises with each batch's own, even in eval mode."""
    channels, length = input_shape[0], input_shape[-1]
    conv = nn.Conv1d(channels, 4, 3, padding=1) if len(input_shape) == 2 else nn.Conv2d(channels, 4, 3, padding=1)
    norm = nn.BatchNorm1d(4, track_running_stats=False) if len(input_shape) == 2 else \
        nn.BatchNorm2d(4, track_running_stats=False)
    width = 4 * length * (input_shape[1] if len(input_shape) == 3 else 1)
    return nn.Sequential(conv, norm, nn.ReLU(), nn.Flatten(), nn.Linear(width, num_classes))


class EditsItsInput(nn.Module):
    """Rescales its input in place (x.mul_(3).sub_(1)): harmless where each batch is a fresh tensor, ruinous where a
    stored split or a batch another model reads is handed to it as it is."""

    def __init__(self, input_shape, num_classes):
        super().__init__()
        self.body = tiny_linear(input_shape, num_classes)

    def forward(self, x):
        x.mul_(3).sub_(1)
        return self.body(x)


def edits_its_input(input_shape, num_classes):
    return EditsItsInput(input_shape, num_classes)


def aux_logits_in_training(input_shape, num_classes):
    """GoogLeNet's pattern: (logits, aux_logits) in training mode, the logits alone in eval mode."""

    class AuxInTraining(nn.Module):
        def __init__(self):
            super().__init__()
            self.body, self.aux = tiny_linear(input_shape, num_classes), tiny_linear(input_shape, num_classes)

        def forward(self, x):
            return (self.body(x), self.aux(x)) if self.training else self.body(x)

    return AuxInTraining()


def squeezes_its_output(input_shape, num_classes):
    """Ends in .squeeze(): (batch, classes) for most batches, (classes,) for an epoch's last batch of one row."""

    class Squeezed(nn.Module):
        def __init__(self):
            super().__init__()
            self.body = tiny_linear(input_shape, num_classes)

        def forward(self, x):
            return self.body(x).squeeze()

    return Squeezed()


def conv_head(input_shape, num_classes):
    """A teacher whose class scores come from a 1x1 convolution before a global pool, with no Linear layer."""
    return nn.Sequential(nn.Conv1d(input_shape[0], 32, 3, padding=1), nn.BatchNorm1d(32), nn.ReLU(),
                         nn.Conv1d(32, 32, 3, padding=1), nn.BatchNorm1d(32), nn.ReLU(),
                         nn.Conv1d(32, num_classes, 1), nn.AdaptiveAvgPool1d(1), nn.Flatten())


def half_weights(input_shape, num_classes):
    """A factory that returns its model in half precision (.half()), as a GPU user might."""
    return tiny_linear(input_shape, num_classes).half()
