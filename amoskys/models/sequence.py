"""Deep sequence detectors: an LSTM and a Transformer autoencoder over each host's recent history.

Each row is scored by the window of ``window`` grid steps ending at it (``windows.SequenceWindows``),
so that a value normal on its own but out of step with what came before stands out. A network
compresses the window into a small code and reconstructs it; the row's score is the mean squared
error of the window's last step (the row itself), its explanation that step's per-feature squared
error. Errors are taken on ``asinh`` of the scaled values (near-identity within a few IQRs,
logarithmic beyond) so that one heavy-tailed counter can neither dominate training nor overflow.
Shared training: Adam on mini-batches, a trimmed loss, early stopping on the last 10% of each
host's windows by time, at most ``max_windows`` windows; torch runs on one thread, where its CPU
kernels are deterministic, so the same seed gives the same scores. torch is imported in functions
only: ``amoskys.models`` must load on machines without it.
"""

from __future__ import annotations

import copy
import math
import pickle
import warnings
from functools import cache, wraps
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import polars as pl

from amoskys.errors import InputError, ModelError
from amoskys.models.base import Detector
from amoskys.models.rows import Rows, as_frame
from amoskys.models.windows import SequenceWindows

WEIGHTS_FILE = "network.pt"
ERRORS_OUTPUT = "squared_error"  # the ONNX output beside onnx_export.OUTPUT: the per-feature explanation
VALIDATION_SHARE = 0.1
MIN_IMPROVEMENT = 1e-3  # relative drop of the validation loss that counts as progress
NORMAL_SAMPLE = 10_000  # normal training rows scored for the threshold and calibration
SCORE_BATCH = 4096


def _on_one_thread(method):
    """method run with torch on one thread. These small steps gain little from a second thread, and when
    the other core is busy OpenMP's barriers stall (the transformer on 100k rows: 82 s on one thread,
    167 s on two, on a shared 2-core machine); one thread also makes results independent of core count."""

    @wraps(method)
    def on_one_thread(*args, **kwargs):
        import torch

        previous = torch.get_num_threads()
        torch.set_num_threads(1)
        try:
            return method(*args, **kwargs)
        finally:
            torch.set_num_threads(previous)

    return on_one_thread


class SequenceAutoencoder(Detector):
    """The shared part of the sequence detectors. Learned, besides the base attributes: ``network_``,
    ``epochs_trained_`` and ``history_`` (per epoch: ``epoch``, ``train_loss``, ``validation_loss``)."""

    def __init__(self, window: int, latent: int, epochs: int, batch_size: int, learning_rate: float,
                 patience: int, trim: float, max_windows: int, threshold_quantile: float, seed: int):  # fmt: skip
        super().__init__(threshold_quantile=threshold_quantile, seed=seed)
        self.window = window
        self.latent = latent
        self.epochs = epochs
        self.batch_size = batch_size
        self.learning_rate = learning_rate
        self.patience = patience
        self.trim = trim
        self.max_windows = max_windows

    def _network(self):
        raise NotImplementedError  # in subclasses: a new torch module, (batch, window, features) in and out

    @_on_one_thread
    def _fit(self, matrix: np.ndarray, X: pl.DataFrame, y: np.ndarray | None) -> None:
        """Train until the validation loss stalls; keep the best epoch's weights."""
        import torch

        self._check_params()
        if X.height < self.window:
            raise InputError(f"{self.name}: needs at least {self.window} training rows (one window), got {X.height}")
        windows, values = SequenceWindows.of(X, self.window), matrix.astype(np.float32)
        rng = np.random.default_rng(self.seed)
        train, validation = windows.training_split(VALIDATION_SHARE, self.max_windows, rng)
        validation = validation if len(validation) else train  # hosts too short to hold out a tail

        with torch.random.fork_rng(devices=[]):  # seed the weights without touching the caller's generator
            torch.manual_seed(self.seed)
            network = self._network()

        def window_errors(positions: np.ndarray, size: int):
            for _, batch in windows.batches(values, positions, size):
                squashed = torch.asinh(torch.from_numpy(batch))
                yield ((network(squashed) - squashed) ** 2).mean(dim=(1, 2))

        optimizer = torch.optim.Adam(network.parameters(), lr=self.learning_rate)
        best_loss, best_weights, stale = math.inf, None, 0
        self.history_ = []
        for epoch in range(1, self.epochs + 1):
            network.train()
            train_loss = 0.0
            for errors in window_errors(rng.permutation(train), self.batch_size):
                loss = self._trimmed_loss(errors)
                optimizer.zero_grad()
                loss.backward()
                optimizer.step()
                train_loss += loss.item() * len(errors)
            network.eval()
            with torch.inference_mode():
                validation_loss = self._trimmed_loss(torch.cat(list(window_errors(validation, SCORE_BATCH)))).item()
            self.history_.append({"epoch": epoch, "train_loss": train_loss / len(train),
                                  "validation_loss": validation_loss})  # fmt: skip
            if validation_loss < best_loss * (1 - MIN_IMPROVEMENT):
                best_loss, stale = validation_loss, 0
                best_weights = {name: weights.clone() for name, weights in network.state_dict().items()}
            elif (stale := stale + 1) >= self.patience:
                break
        network.load_state_dict(best_weights)
        self.network_, self.epochs_trained_ = network.eval(), epoch

    def _trimmed_loss(self, window_errors):
        """The mean of the window errors without the largest ``trim`` share. Unsupervised training data
        holds attacks too; left in the loss, a recurring one is learned as normal and reconstructed well
        (on a fleet with 10% incident rows, leaving them out lifted ROC-AUC from 0.92 to 0.99)."""
        kept = max(1, math.ceil(len(window_errors) * (1 - self.trim)))
        return window_errors.topk(kept, largest=False).values.mean()

    def _check_params(self) -> None:
        counts = ("window", "latent", "epochs", "batch_size", "patience", "max_windows")
        if bad := [name for name in counts if not (isinstance(getattr(self, name), int) and getattr(self, name) >= 1)]:
            raise ModelError(f"{self.name}: {', '.join(bad)} must be positive integers")
        if not (self.learning_rate > 0 and 0 <= self.trim < 1):
            raise ModelError(f"{self.name}: needs learning_rate > 0 and 0 <= trim < 1")

    def _score(self, matrix: np.ndarray, X: pl.DataFrame) -> np.ndarray:
        return self._last_step_errors(matrix, X).mean(axis=1)

    def _contributions(self, matrix: np.ndarray, X: pl.DataFrame) -> np.ndarray:
        return self._last_step_errors(matrix, X)

    def _normal_scores(self, X: pl.DataFrame, y: np.ndarray | None, normal: pl.DataFrame) -> np.ndarray:
        """Scores of at most ``NORMAL_SAMPLE`` normal training rows, drawn with the seed: a quantile of
        10,000 scores is nearly as good a threshold as one of all, and scoring is most of a long fit."""
        windows = SequenceWindows.of(normal, self.window)
        positions = np.arange(len(windows))
        if len(positions) > NORMAL_SAMPLE:
            positions = np.sort(np.random.default_rng(self.seed).choice(positions, NORMAL_SAMPLE, replace=False))
        return self._window_errors(self._matrix(normal), windows, positions).mean(axis=1)

    def _last_step_errors(self, matrix: np.ndarray, X: Rows) -> np.ndarray:
        """(rows, features): each row's per-feature squared error as the last step of its window."""
        windows = SequenceWindows.of(as_frame(X), self.window)
        errors = np.empty(matrix.shape, dtype=np.float64)
        errors[windows.order] = self._window_errors(matrix, windows, np.arange(len(windows)))
        return errors

    @_on_one_thread
    def _window_errors(self, matrix: np.ndarray, windows: SequenceWindows, positions: np.ndarray) -> np.ndarray:
        """(positions, features): the per-feature squared error of the last step of the window at each position."""
        import torch

        scorer = _torch_networks().LastStepError(self.network_)
        errors = np.empty((len(positions), matrix.shape[1]), dtype=np.float64)
        done = 0
        with torch.inference_mode():
            for _, batch in windows.batches(matrix.astype(np.float32), positions, SCORE_BATCH):
                errors[done : done + len(batch)] = scorer(torch.from_numpy(batch))[1].numpy()
                done += len(batch)
        return errors

    def save(self, folder: Path) -> list[Path]:
        """Write the weights as a torch state dict and all else (params, scaling, threshold) as joblib into folder."""
        import torch

        self._check_fitted()
        shell = copy.copy(self)
        del shell.network_  # torch modules built in a function cannot be pickled; their weights can
        files = Detector.save(shell, folder)
        torch.save(self.network_.state_dict(), folder / WEIGHTS_FILE)
        return [*files, folder / WEIGHTS_FILE]

    @classmethod
    def load(cls, folder: Path) -> SequenceAutoencoder:
        """The detector that save(folder) wrote."""
        import torch

        model = super().load(folder)
        try:
            model.network_ = model._network().eval()
            model.network_.load_state_dict(torch.load(folder / WEIGHTS_FILE, weights_only=True))
        except (OSError, RuntimeError, pickle.UnpicklingError) as error:
            raise ModelError(f"cannot load {cls.name} from {folder}: {error}") from None
        return model

    def export_onnx(self, path: Path) -> Path:
        """Write the network as ONNX to path (check it with ``onnx_parity``). Input ``input``: float32 (batch,
        window, features), windows of the scaled matrix (``_matrix``) as ``SequenceWindows`` builds them;
        outputs ``score`` (batch,), the score of each window's last row, and ``squared_error`` (batch,
        features), that row's explanation; the batch axis is dynamic. Exported by torch.export
        (``dynamo=True``): the TorchScript exporter is deprecated and cannot export ``asinh``."""
        import torch

        from amoskys.models import onnx_export

        self._check_fitted()
        scorer = _torch_networks().LastStepError(self.network_).eval()
        example = torch.zeros(2, self.window, len(self.features_))  # 2: a batch of 1 would be specialised
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # torch.export's notices about its own internals
            program = torch.onnx.export(scorer, (example,), dynamo=True, verbose=False, input_names=[onnx_export.INPUT],
                                        output_names=[onnx_export.OUTPUT, ERRORS_OUTPUT],
                                        dynamic_shapes=({0: torch.export.Dim("batch")},))  # fmt: skip
        return onnx_export.save(program.model_proto, path)

    def onnx_parity(self, onnx_path: Path, X: pl.DataFrame) -> float:
        """As ``Detector.onnx_parity``, feeding the export X's windows rather than single rows."""
        import onnxruntime as ort

        from amoskys.models import onnx_export

        session = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
        windows, scores = SequenceWindows.of(X, self.window), np.empty(X.height)
        for positions, batch in windows.batches(self._matrix(X).astype(np.float32), np.arange(X.height), SCORE_BATCH):
            scores[windows.order[positions]] = session.run([onnx_export.OUTPUT], {onnx_export.INPUT: batch})[0]
        return float(np.max(np.abs(scores - self.score_samples(X)), initial=0.0))


class LstmAutoencoder(SequenceAutoencoder):
    """Encoder LSTM -> latent code -> decoder LSTM, reconstructing the window step by step."""

    name = "lstm_ae"

    def __init__(self, window: int = 30, hidden: int = 32, latent: int = 8, epochs: int = 10, batch_size: int = 256,
                 learning_rate: float = 3e-3, patience: int = 3, trim: float = 0.1, max_windows: int = 3_000,
                 threshold_quantile: float = 0.99, seed: int = 0):  # fmt: skip
        super().__init__(window, latent, epochs, batch_size, learning_rate, patience, trim, max_windows,
                         threshold_quantile, seed)  # fmt: skip
        self.hidden = hidden

    def _network(self):
        return _torch_networks().LstmNetwork(len(self.features_), self.hidden, self.latent)


class TransformerAutoencoder(SequenceAutoencoder):
    """Transformer encoder -> linear bottleneck over the whole window -> transformer decoder."""

    name = "transformer_ae"

    def __init__(self, window: int = 30, d_model: int = 32, heads: int = 2, layers: int = 1, latent: int = 8,
                 epochs: int = 10, batch_size: int = 256, learning_rate: float = 3e-3, patience: int = 3,
                 trim: float = 0.1, max_windows: int = 3_000, threshold_quantile: float = 0.99,
                 seed: int = 0):  # fmt: skip
        super().__init__(window, latent, epochs, batch_size, learning_rate, patience, trim, max_windows,
                         threshold_quantile, seed)  # fmt: skip
        self.d_model = d_model
        self.heads = heads
        self.layers = layers

    def _network(self):
        return _torch_networks().TransformerNetwork(len(self.features_), self.window, self.d_model, self.heads,
                                                    self.layers, self.latent)  # fmt: skip


@cache
def _torch_networks() -> SimpleNamespace:
    """The torch module classes, defined on first use so that importing this module does not import torch."""
    import torch
    from torch import nn

    class LstmNetwork(nn.Module):
        def __init__(self, features: int, hidden: int, latent: int):
            super().__init__()
            self.encoder = nn.LSTM(features, hidden, batch_first=True)
            self.to_latent = nn.Linear(hidden, latent)
            self.decoder = nn.LSTM(latent, hidden, batch_first=True)
            self.output = nn.Linear(hidden, features)

        def forward(self, windows: torch.Tensor) -> torch.Tensor:
            _, (last_hidden, _) = self.encoder(windows)
            code = self.to_latent(last_hidden[-1])
            # The decoder reads the code at every step and unrolls the window from it.
            decoded, _ = self.decoder(code.unsqueeze(1).expand(-1, windows.shape[1], -1))
            return self.output(decoded)

    def transformer_stack(d_model: int, heads: int, layers: int) -> nn.TransformerEncoder:
        layer = nn.TransformerEncoderLayer(d_model, heads, dim_feedforward=2 * d_model, dropout=0.0, batch_first=True)
        return nn.TransformerEncoder(layer, layers, enable_nested_tensor=False)

    class TransformerNetwork(nn.Module):
        def __init__(self, features: int, window: int, d_model: int, heads: int, layers: int, latent: int):
            super().__init__()
            self.embed = nn.Linear(features, d_model)
            self.position = nn.Parameter(torch.randn(window, d_model) * 0.02)  # learned positional encoding
            self.encoder = transformer_stack(d_model, heads, layers)
            # The bottleneck sees the whole window at once: a per-step one could copy each step through.
            self.bottleneck = nn.Sequential(nn.Flatten(), nn.Linear(window * d_model, latent),
                                            nn.Linear(latent, window * d_model))  # fmt: skip
            self.decoder = transformer_stack(d_model, heads, layers)
            self.output = nn.Linear(d_model, features)

        def forward(self, windows: torch.Tensor) -> torch.Tensor:
            encoded = self.encoder(self.embed(windows) + self.position)
            code = self.bottleneck(encoded).reshape(encoded.shape)
            return self.output(self.decoder(code + self.position))

    class LastStepError(nn.Module):
        """Scaled windows in; the score and the per-feature squared error of the last step (on asinh) out."""

        def __init__(self, network: nn.Module):
            super().__init__()
            self.network = network

        def forward(self, windows: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
            squashed = torch.asinh(windows)
            errors = (self.network(squashed)[:, -1] - squashed[:, -1]) ** 2
            return errors.mean(dim=1), errors

    return SimpleNamespace(LstmNetwork=LstmNetwork, TransformerNetwork=TransformerNetwork, LastStepError=LastStepError)
