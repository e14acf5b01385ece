"""A model trained outside the pipeline: plain PyTorch, its own architecture code, its own loop.

Reads the embedded default's prepared training split (written by `otjr stage preprocess
--dataset digits`, or by `dvc repro`), trains a small CNN on clean images with SGD, and
saves a DataParallel-style wrapped state dict, the way many released checkpoints look:
`{"state_dict": {"module.0.weight": ..., ...}, "epoch": ...}`. Then evaluate it with

    otjr evaluate digits_plain.pt --dataset digits --arch small_cnn --arch-args '{"width": 16}' \
        --mean 0.306 --std 0.376

Usage: python docs/examples/train_plain_pytorch.py [OUT] [--epochs N]
"""

import argparse

import torch
import torch.nn.functional as F
from safetensors.torch import load_file
from torch import nn

MEAN, STD = 0.306, 0.376  # normalisation this script applies to images in [0, 1]


def small_cnn(width: int = 16, classes: int = 10) -> nn.Sequential:
    """Three conv-BN-ReLU blocks, global pooling and a linear head (the layout of the pipeline's small_cnn)."""
    def block(cin, cout, stride):
        return [nn.Conv2d(cin, cout, 3, stride, 1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True)]

    return nn.Sequential(*block(1, width, 1), *block(width, 2 * width, 2), *block(2 * width, 2 * width, 1),
                         nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(2 * width, classes))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("out", nargs="?", default="digits_plain.pt")
    parser.add_argument("--epochs", type=int, default=15)
    args = parser.parse_args()

    torch.manual_seed(0)
    train = load_file("data/prepared/digits/train.safetensors")
    x, y = train["images"].float() / 255, train["labels"]
    model = small_cnn()
    opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9, weight_decay=2e-4)
    for epoch in range(args.epochs):
        model.train()
        for idx in torch.randperm(len(y)).split(64):
            loss = F.cross_entropy(model((x[idx] - MEAN) / STD), y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
    model.eval()
    with torch.no_grad():
        accuracy = (model((x - MEAN) / STD).argmax(1) == y).float().mean().item()
    wrapped = nn.DataParallel(model)  # keys gain the "module." prefix, as in many released checkpoints
    torch.save({"state_dict": wrapped.state_dict(), "epoch": args.epochs}, args.out)
    print(f"trained {args.epochs} epochs, train accuracy {100 * accuracy:.1f}% -> {args.out}")


if __name__ == "__main__":
    main()
