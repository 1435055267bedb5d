"""A medaug method in a plain PyTorch training loop (docs/api.md): synthetic radiographs in memory,
a `none` baseline first when the method starts from one (apga, gradcam, end2end), then the method.

    python examples/own_loop.py                      # apga, CPU
    python examples/own_loop.py --method cutout --epochs 5
"""

import argparse

import torch
from sklearn.metrics import roc_auc_score

import medaug.methods as mm
from medaug.data.synth import arrays
from medaug.models.classifiers import create_classifier

parser = argparse.ArgumentParser()
parser.add_argument("--method", default="apga", choices=mm.available())
parser.add_argument("--epochs", type=int, default=3)
parser.add_argument("--size", type=int, default=32)
args = parser.parse_args()

torch.manual_seed(0)
train_images, train_labels = arrays(256, args.size, seed=0)  # uint8 [N, H, W], int64 [N]
test_images, test_labels = arrays(128, args.size, seed=1)
x_train, y_train = torch.from_numpy(train_images).unsqueeze(1) / 255.0, torch.from_numpy(train_labels)  # [N, 1, H, W] in [0, 1]
x_test = torch.from_numpy(test_images).unsqueeze(1) / 255.0

model = create_classifier("tiny", in_channels=1, num_classes=2)  # any nn.Module [B, 1, H, W] -> [B, 2]
optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
ctx = mm.context(model, optimizer, num_classes=2, size=args.size, epochs=args.epochs, classifier="tiny",
                 train_images=train_images)  # classifier and train_images: for apga's GradCAM prior


def train(method):
    method.setup(ctx)
    for epoch in range(args.epochs):
        model.train()
        for batch in torch.randperm(len(x_train)).split(32):
            logs = method.train_step(ctx, x_train[batch], y_train[batch])  # every update of this batch
        method.epoch_end(ctx)
        print(f"{method.name} epoch {epoch + 1}: " + ", ".join(f"{k} {float(v):.3f}" for k, v in logs.items()))


method = mm.create(args.method)
if method.needs_baseline:
    train(mm.create("none"))  # the trained baseline the method starts from
train(method)
model.eval()
with torch.no_grad():
    probs = method.predict(ctx, x_test).softmax(1)[:, 1]
print(f"{args.method}: test AUROC {roc_auc_score(test_labels, probs.numpy()):.3f}")
