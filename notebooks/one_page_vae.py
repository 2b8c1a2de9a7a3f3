"""A VAE on binarized MNIST, in torch and torchvision only.

From the repository's root: python notebooks/one_page_vae.py [--help]. On
the CPU it trains, bit for bit, what the VAE Tutorial Book's package trains
with the same settings.
"""

import argparse
import math
from pathlib import Path

import torch
from torch import nn
from torch.nn import functional as F
from torchvision import datasets
from torchvision.utils import save_image


class Encoder(nn.Module):
    """q(z|x) = N(mu(x), diag(exp(logvar(x))))."""

    def __init__(self, latent_dim: int):
        super().__init__()
        self.conv1 = nn.Conv2d(1, 16, 3, stride=2, padding=1)
        self.conv2 = nn.Conv2d(16, 32, 3, stride=2, padding=1)
        self.fc1 = nn.Linear(32 * 7 * 7, 256)
        self.fc_mu = nn.Linear(256, latent_dim)
        self.fc_logvar = nn.Linear(256, latent_dim)

    def forward(self, x):  # x: (B, 1, 28, 28)
        h = F.relu(self.conv1(x))  # (B, 16, 14, 14)
        h = F.relu(self.conv2(h))  # (B, 32, 7, 7)
        h = F.relu(self.fc1(h.flatten(1)))  # (B, 256)
        return self.fc_mu(h), self.fc_logvar(h)  # mu, logvar: (B, D)


class Decoder(nn.Module):
    """p(x|z) = Bernoulli(sigmoid(logits(z))): one coin per pixel."""

    def __init__(self, latent_dim: int):
        super().__init__()
        self.fc1 = nn.Linear(latent_dim, 256)
        self.fc2 = nn.Linear(256, 32 * 7 * 7)
        self.conv1 = nn.ConvTranspose2d(32, 16, 4, stride=2, padding=1)
        self.conv2 = nn.ConvTranspose2d(16, 1, 4, stride=2, padding=1)

    def forward(self, z):  # z: (B, D)
        h = F.relu(self.fc2(F.relu(self.fc1(z))))  # (B, 32 * 7 * 7)
        h = F.relu(self.conv1(h.view(-1, 32, 7, 7)))  # (B, 16, 14, 14)
        return self.conv2(h)  # logits: (B, 1, 28, 28)


class VAE(nn.Module):
    def __init__(self, latent_dim: int = 20):
        super().__init__()
        self.latent_dim = latent_dim
        self.encoder = Encoder(latent_dim)
        self.decoder = Decoder(latent_dim)

    def forward(self, x):
        mu, logvar = self.encoder(x)
        eps = torch.randn_like(mu)
        z = mu + torch.exp(0.5 * logvar) * eps  # the reparameterization
        return self.decoder(z), mu, logvar


def neg_elbo(x, logits, mu, logvar):
    """-ELBO, one z: -log p(x|z) + KL(q(z|x) || N(0, I)); each term (B,)."""
    bce = F.binary_cross_entropy_with_logits(logits, x, reduction="none")
    kl = -0.5 * (1 + logvar - mu.pow(2) - logvar.exp())  # (B, D)
    return bce.flatten(1).sum(1), kl.sum(1)


def train_epoch(model, opt, images, batches):
    """One pass over batches of indices into images; mean loss per image."""
    model.train()
    total = torch.zeros((), device=images.device)  # no sync per step
    for batch in batches:
        x = torch.bernoulli(images[batch])  # dynamic binarization
        recon, kl = neg_elbo(x, *model(x))
        loss = recon.sum() + kl.sum()  # -ELBO summed over the batch
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        total += loss.detach()
    return total.item() / len(images)


@torch.no_grad()
def evaluate(model, x_test):
    """Mean -ELBO per test image, with one z per image from a fixed seed."""
    model.eval()
    sums = torch.zeros(2, dtype=torch.float64, device=x_test.device)
    with torch.random.fork_rng():  # then puts training's generators back
        torch.manual_seed(1234)
        for x in x_test.split(1000):
            recon, kl = neg_elbo(x, *model(x))
            sums += torch.stack([recon.sum(), kl.sum()]).double()
    return (sums / len(x_test)).sum().item()  # recon + kl


def parse_args(argv=None):
    """The settings, from the command line or from argv, a list of strings."""
    p = argparse.ArgumentParser(description="Train a VAE on MNIST.")
    p.add_argument("--epochs", type=int, default=6)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--train-size", type=int, default=60_000)
    p.add_argument("--data", default="data", help="MNIST's folder")
    p.add_argument("--out", default="runs/one_page_vae.pt")
    cuda = torch.cuda.is_available()
    p.add_argument("--device", default="cuda" if cuda else "cpu")
    args = p.parse_args(argv)
    settings = args.epochs, args.batch_size, args.train_size, args.lr
    if not all(v > 0 for v in settings):  # also refuses an lr of nan
        p.error("epochs, batch size, train size and lr must be > 0")
    if Path(args.out).suffix == ".png":
        p.error("--out names the weights' file; the samples go next to it")
    return args


def main(argv=None):
    """Train, save the weights and 64 samples; model, [(train, test)]."""
    args = parse_args(argv)
    torch.manual_seed(args.seed)  # initial weights, each batch's coins, noise
    model = VAE().to(args.device)
    opt = torch.optim.Adam(model.parameters(), lr=args.lr)
    try:  # from --data, or downloaded into it
        train_set = datasets.MNIST(args.data, train=True, download=True)
        test_set = datasets.MNIST(args.data, train=False, download=True)
    except RuntimeError as e:  # offline, and MNIST not in --data
        raise SystemExit(f"no MNIST in {args.data} ({e}); pass --data") from e
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    x_train = train_set.data[: args.train_size, None] / 255  # (N, 1, 28, 28)
    rng = torch.Generator().manual_seed(0)  # one fixed test binarization
    x_test = torch.bernoulli(test_set.data[:, None] / 255, generator=rng)
    x_train, x_test = x_train.to(args.device), x_test.to(args.device)
    history = []
    for epoch in range(args.epochs):
        cosine = 0.5 * (1 + math.cos(math.pi * epoch / args.epochs))
        for group in opt.param_groups:  # lr decays towards 0
            group["lr"] = args.lr * cosine
        rng = torch.Generator().manual_seed(args.seed * 100_003 + epoch)
        order = torch.randperm(len(x_train), generator=rng).to(args.device)
        train = train_epoch(model, opt, x_train, order.split(args.batch_size))
        test = evaluate(model, x_test)
        history.append((train, test))
        print(f"epoch {epoch + 1}: -ELBO {train:.2f} train, {test:.2f} test")
        if not math.isfinite(train):
            raise SystemExit(f"the loss is {train}: lower --lr {args.lr}")

    torch.save(model.state_dict(), args.out)
    rng = torch.Generator().manual_seed(args.seed)
    z = torch.randn(64, model.latent_dim, generator=rng)
    with torch.no_grad():  # samples: decode z ~ N(0, I), a PNG of 8 x 8
        x = torch.sigmoid(model.eval().decoder(z.to(args.device)))
    save_image(x, Path(args.out).with_suffix(".png"))
    print(f"weights in {args.out}, 64 samples next to them in a PNG")
    return model, history


if __name__ == "__main__":
    main()
