"""SpidR and DinoSR: one model class; the variants differ in where the prediction heads read.

SpidR: head k reads student layer k's representation (the last K layers). DinoSR: every head reads the
student's final output (the last layer after its final LayerNorm, as the reference release does).
(The other difference, the teacher schedule, lives in ``schedules.teacher_decay``.)

As in the reference release, the teacher's targets, the codebook statistics and the perplexities are
taken on the masked frames only.

Training step (docs/method.md): ``forward(wav, mask)`` returns per-layer masked cross-entropy sums and the
codebook statistics; the training loop normalises by the global number of masked frames, all-reduces
the statistics, then calls ``update_codebooks`` and, after the optimiser step, ``update_teacher``.
"""

from __future__ import annotations

import contextlib
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

from spidrkit.config import ModelConfig
from spidrkit.models.codebook import Codebook, decay_at, instance_norm, perplexity
from spidrkit.models.layers import Encoder, FeatureExtractor, FeatureProjection, num_frames, receptive_field
from spidrkit.models.signal import standardize_batch
from spidrkit.models.spectral import LogMelFrontEnd


class CodebookPrediction(NamedTuple):
    probs: torch.Tensor  # (B, T, V) posteriors of the head
    units: torch.Tensor  # (B, T) argmax


class SpidR(nn.Module):
    def __init__(self, cfg: ModelConfig | None = None) -> None:
        super().__init__()
        cfg = cfg or ModelConfig()
        self.cfg = cfg
        self.mask_embedding = nn.Parameter(torch.empty(cfg.dim).uniform_())
        self.register_buffer("current_step", torch.zeros(1, dtype=torch.long))
        self.feature_extractor = FeatureExtractor(cfg) if cfg.frontend == "cnn" else LogMelFrontEnd(cfg)
        self.feature_projection = FeatureProjection(cfg)
        self.student = Encoder(cfg)
        self.teacher = Encoder(cfg)
        self.heads = nn.ModuleList(
            nn.Sequential(nn.Linear(cfg.dim, cfg.codebook_size)) for _ in range(cfg.num_codebooks)
        )
        self.codebooks = nn.ModuleList(
            Codebook(cfg.codebook_size, cfg.dim, cfg.codebook_decay) for _ in range(cfg.num_codebooks)
        )
        self.student.init_blocks(cfg.init)
        if cfg.init == "normal":  # "release": the heads keep PyTorch's defaults
            for head in self.heads:
                nn.init.normal_(head[0].weight, mean=0.0, std=0.02)
                nn.init.zeros_(head[0].bias)
        self.teacher.load_state_dict(self.student.state_dict())
        if cfg.teacher_init == "independent":  # the blocks' linear weights drawn again; norms, pos conv copied
            self.teacher.init_blocks(cfg.init)
        self.teacher.requires_grad_(False)
        self.teacher.eval()
        if cfg.heads == "per_layer":
            # SpidR never uses the student's last LayerNorm: no loss reaches it (and DDP must not wait for it)
            self.student.layers[-1].final_layer_norm.requires_grad_(False)

    # ------------------------------------------------------------------ set-up
    def train(self, mode: bool = True) -> SpidR:
        super().train(mode)
        self.teacher.eval()  # the teacher never uses dropout
        return self

    @property
    def target_layers(self) -> tuple[int, ...]:
        return self.cfg.target_layers

    @property
    def head_input_layers(self) -> tuple[int, ...]:
        """1-based student layer each head reads."""
        if self.cfg.heads == "per_layer":
            return self.target_layers
        return (self.cfg.num_layers,) * self.cfg.num_codebooks

    def head_inputs(self, x: torch.Tensor, reps: list[torch.Tensor], heads: list[int]) -> list[torch.Tensor]:
        """What each head reads: the only lines where SpidR and DinoSR differ."""
        if self.cfg.heads == "per_layer":
            return [reps[self.target_layers[h] - 1] for h in heads]
        return [x for _ in heads]  # DinoSR: the student's final output

    # ------------------------------------------------------------------ geometry (the SpeechEncoder interface)
    input_normalization = "standardize"  # each utterance to mean 0, variance 1 (models.signal)

    @property
    def sample_rate(self) -> int:
        return self.cfg.sample_rate

    @property
    def frame_rate(self) -> float:
        return self.cfg.frame_rate

    @property
    def num_layers(self) -> int:
        return self.cfg.num_layers

    @property
    def dim(self) -> int:
        return self.cfg.dim

    @property
    def variant(self) -> str:
        """``spidr`` (heads read their own layer) or ``dinosr`` (heads read the last layer): what the
        weights alone tell; the teacher schedule is a training choice (``Config.variant``)."""
        return "spidr" if self.cfg.heads == "per_layer" else "dinosr"

    def num_frames(self, num_samples):
        """Output frames of ``num_samples`` input samples (an int or a tensor of lengths)."""
        return num_frames(num_samples, self.cfg.conv_kernels, self.cfg.conv_strides)

    @property
    def min_samples(self) -> int:
        """The shortest input that gives one frame (the downsampler's receptive field)."""
        return receptive_field(self.cfg.conv_kernels, self.cfg.conv_strides)

    def features(self, wav: torch.Tensor, padding_mask: torch.Tensor | None = None) -> torch.Tensor:
        """Downsampler + projection: standardised waveform (B, L) -> frames (B, T, dim); ``padding_mask``
        (B, T) marks a padded batch's padding frames (the log mel front end with per-utterance band
        normalisation leaves them out of its statistics)."""
        return self.feature_projection(self._front(wav, padding_mask))

    def _front(self, wav: torch.Tensor, padding_mask: torch.Tensor | None = None) -> torch.Tensor:
        if isinstance(self.feature_extractor, LogMelFrontEnd):
            return self.feature_extractor(wav, None if padding_mask is None else ~padding_mask)
        return self.feature_extractor(wav)

    def _training_frames(self, wav: torch.Tensor, student_wav: torch.Tensor | None,
                         warp: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor | None]:
        """(the teacher's clean front-end frames, the student's perturbed ones or None): ``student_wav`` is a
        perturbed copy of ``wav`` (same length), ``warp`` (B,) VTLP factors of the student's filterbank (read on
        ``student_wav`` when both are given)."""
        if student_wav is not None and student_wav.shape != wav.shape:
            raise ValueError(f"the student's waveform {tuple(student_wav.shape)} must match {tuple(wav.shape)}")
        if warp is not None:
            if not isinstance(self.feature_extractor, LogMelFrontEnd):
                raise ValueError("VTLP warps the log mel filterbank: it needs model.frontend = logmel or logmel_cmvn")
            spec = self.feature_extractor.power(wav)
            student = spec if student_wav is None else self.feature_extractor.power(student_wav)
            return self.feature_extractor.log_mel(spec), self.feature_extractor.log_mel(student, warp=warp)
        return self._front(wav), None if student_wav is None else self._front(student_wav)

    # ------------------------------------------------------------------ training
    def forward(
        self, wav: torch.Tensor, mask: torch.Tensor, freeze_features: bool = False,
        student_wav: torch.Tensor | None = None, warp: torch.Tensor | None = None,
    ) -> dict[str, torch.Tensor]:
        """One training forward pass on equal-length, standardised waveforms.

        wav: (B, L); mask: (B, T) bool, True on masked frames (see ``masking.sample_mask``). Voice
        perturbation of the student's input only (the teacher and the codebooks read ``wav``):
        ``student_wav`` (B, L), a perturbed copy of ``wav``, or ``warp`` (B,), VTLP factors of the log mel
        filterbank.
        Returns tensors only (no host synchronisation):
          ce_sum (K,): cross-entropy summed over masked frames, per target layer
          num_masked (): masked frames in this batch
          sums (K, V, D), counts (K, V): codebook statistics of the teacher targets on masked frames
          correct (K,): masked frames where the head's argmax equals the target
          prob_sum (K, V): sum of the predicted distributions over masked frames
        """
        cfg = self.cfg
        grad_ctx = torch.no_grad() if freeze_features else contextlib.nullcontext()
        with grad_ctx:
            clean, perturbed = self._training_frames(wav, student_wav, warp)
            projected = self.feature_projection(clean, dropout=False)
            student_in = projected if perturbed is None else self.feature_projection(perturbed, dropout=False)
        feats = self.feature_projection.dropout(student_in)
        if mask.shape != feats.shape[:2]:
            raise ValueError(f"mask shape {tuple(mask.shape)} does not match the frames {tuple(feats.shape[:2])}")
        maskf = mask.float()
        if cfg.projection_dropout_scope == "student":
            teacher_input = projected
        else:  # the release's: the teacher reads the student's dropped-out frames (its own draw when perturbed)
            teacher_input = feats if perturbed is None else self.feature_projection.dropout(projected)
        labels, sums, counts = self.teacher_targets(teacher_input.detach(), weights=maskf)

        x = torch.where(mask.unsqueeze(-1), self.mask_embedding.to(feats.dtype), feats)
        x, reps = self.student(x, layerdrop=cfg.layerdrop)
        heads = list(range(cfg.num_codebooks))
        ce, correct, prob_sum = [], [], []
        for k, z in zip(heads, self.head_inputs(x, reps, heads)):
            logp = F.log_softmax(self.heads[k](z).float(), dim=-1)  # (B, T, V)
            nll = -logp.gather(-1, labels[k].unsqueeze(-1)).squeeze(-1)
            ce.append((nll * maskf).sum())
            with torch.no_grad():
                correct.append(((logp.argmax(-1) == labels[k]).float() * maskf).sum())
                prob_sum.append((logp.exp() * maskf.unsqueeze(-1)).sum((0, 1)))
        return {
            "ce_sum": torch.stack(ce),
            "num_masked": maskf.sum(),
            "sums": sums,
            "counts": counts,
            "correct": torch.stack(correct),
            "prob_sum": torch.stack(prob_sum),
        }

    @torch.no_grad()
    def teacher_targets(
        self, feats: torch.Tensor, weights: torch.Tensor | None = None, padding_mask: torch.Tensor | None = None
    ):
        """Teacher labels per target layer (K, B, T) and codebook statistics (K, V, D), (K, V) of the
        frames selected by ``weights`` (B, T) (all frames when None), from the unmasked input."""
        _, reps = self.teacher(feats, padding_mask)
        flat_w = None if weights is None else weights.flatten()
        labels, sums, counts = [], [], []
        with torch.autocast(feats.device.type, enabled=False):
            for k, layer in enumerate(self.target_layers):
                z = instance_norm(reps[layer - 1])  # float32
                flat = z.flatten(0, 1)
                lab = self.codebooks[k].assign(flat)
                s, c = self.codebooks[k].statistics(flat, lab, flat_w)
                labels.append(lab.view(z.shape[:2]))
                sums.append(s)
                counts.append(c)
        return torch.stack(labels), torch.stack(sums), torch.stack(counts)

    @torch.no_grad()
    def update_codebooks(self, sums: torch.Tensor, counts: torch.Tensor) -> None:
        """EMA update of every codebook from (already all-reduced) statistics (K, V, D), (K, V); with
        ``model.codebook_decay_warmup`` the decay of the current step (``codebook.decay_at``)."""
        cfg = self.cfg
        decay = None
        if cfg.codebook_decay_warmup > 0:
            decay = decay_at(self.current_step, cfg.codebook_decay, cfg.codebook_decay_start,
                             cfg.codebook_decay_warmup)
        for k, cb in enumerate(self.codebooks):
            cb.update(sums[k], counts[k], decay)

    @torch.no_grad()
    def init_codebooks(self, batches: list[tuple[torch.Tensor, torch.Tensor]], generator: torch.Generator
                       ) -> list[torch.Tensor]:
        """``model.codebook_init = "data"``: every codebook's codewords := a random subset of the normalised
        teacher targets of ``batches`` [(wav (B, S), mask (B, T))]: the masked frames (all frames when fewer
        masked frames than codewords), the projection without dropout. Returns the pool of each codebook
        (N, D), the frames the codewords were drawn from. Not distributed: the trainer broadcasts rank 0's."""
        pools: list[list[torch.Tensor]] = [[] for _ in self.codebooks]
        enough = sum(int(m.sum()) for _, m in batches) >= self.cfg.codebook_size
        for wav, mask in batches:
            projected = self.feature_projection(self.feature_extractor(wav), dropout=False)
            _, reps = self.teacher(projected)
            keep = mask.flatten() if enough else torch.ones(mask.numel(), dtype=torch.bool, device=mask.device)
            for k, layer in enumerate(self.target_layers):
                pools[k].append(instance_norm(reps[layer - 1]).flatten(0, 1)[keep])
        out = []
        for cb, pool in zip(self.codebooks, pools):
            z = torch.cat(pool)
            cb.init_from(z, generator)
            out.append(z)
        return out

    @torch.no_grad()
    def update_teacher(self, beta: float) -> None:
        """theta_T <- beta theta_T + (1 - beta) theta_S on the encoder; positional conv copied.
        beta == 1 means the teacher is frozen: nothing moves."""
        if beta >= 1.0:
            return
        t_avg, s_avg, t_copy, s_copy = [], [], [], []
        for (name, pt), ps in zip(self.teacher.named_parameters(), self.student.parameters()):
            if name.startswith("pos_conv_embed."):
                t_copy.append(pt)
                s_copy.append(ps)
            else:
                t_avg.append(pt)
                s_avg.append(ps)
        torch._foreach_lerp_(t_avg, [p.detach() for p in s_avg], 1.0 - beta)
        torch._foreach_copy_(t_copy, [p.detach() for p in s_copy])

    def trainable_parameters(self, include_features: bool = True):
        """What the optimiser updates: student, mask embedding, heads, and (until frozen) the downsampler
        and projection. The teacher and the codebooks are excluded."""
        mods = [self.student, self.heads]
        if include_features:
            mods += [self.feature_extractor, self.feature_projection]
        params = [self.mask_embedding]
        for m in mods:
            params += [p for p in m.parameters() if p.requires_grad]
        return params

    # ------------------------------------------------------------------ inference
    def _prepare(self, wav: torch.Tensor, lengths: torch.Tensor | None, standardize: bool):
        if wav.dim() == 1:
            wav = wav.unsqueeze(0)
        if wav.dim() != 2:
            raise ValueError(f"expected a waveform (L,) or a batch (B, L), got shape {tuple(wav.shape)}")
        wav = wav.float()
        B, L = wav.shape
        if lengths is None:
            lengths = torch.full((B,), L, dtype=torch.long, device=wav.device)
        lengths = torch.as_tensor(lengths, device=wav.device).long()
        need = self.min_samples
        if int(lengths.min()) < need:
            raise ValueError(f"every waveform needs at least {need} samples, got {int(lengths.min())}")
        if standardize:
            wav = standardize_batch(wav, lengths)
        else:
            valid = torch.arange(L, device=wav.device)[None, :] < lengths[:, None]
            wav = wav * valid
        frames = self.num_frames(lengths)
        T = self.num_frames(L)
        padding_mask = torch.arange(T, device=wav.device)[None, :] >= frames[:, None]
        return wav, frames, padding_mask if bool(padding_mask.any()) else None

    def _check_layers(self, layers, allowed, what: str) -> list[int]:
        layers = list(allowed) if layers is None else [layers] if isinstance(layers, int) else list(layers)
        bad = [x for x in layers if x not in allowed]
        if bad:
            raise ValueError(f"{what} {bad} out of range; valid (1-based): {list(allowed)}")
        return layers

    @contextlib.contextmanager
    def _eval_student(self):
        was = self.training
        self.eval()
        try:
            yield
        finally:
            self.train(was)

    def layer_outputs(
        self,
        wav: torch.Tensor,
        lengths: torch.Tensor | None = None,
        layers: int | list[int] | None = None,
        standardize: bool = True,
    ) -> dict[int, torch.Tensor]:
        """Student representations (the pre-residual FFN output) of the requested 1-based layers.

        wav: (L,) or (B, L) at 16 kHz; ``lengths`` (B,) in samples for a padded batch. Each waveform is
        standardised over its own valid samples unless ``standardize=False``. Runs the encoder only up to
        the deepest requested layer, in eval mode. Returns {layer: (B, T, dim)}; frames past a file's
        ``num_frames(length)`` are padding (set to 0).
        """
        layers = self._check_layers(layers, range(1, self.cfg.num_layers + 1), "layers")
        with self._eval_student():
            wav, _, padding_mask = self._prepare(wav, lengths, standardize)
            feats = self.features(wav, padding_mask)
            _, reps = self.student(feats, padding_mask, num_layers=max(layers))
        out = {}
        for layer in layers:
            r = reps[layer - 1]
            out[layer] = r if padding_mask is None else r.masked_fill(padding_mask.unsqueeze(-1), 0.0)
        return out

    @torch.no_grad()
    def teacher_units(self, wav: torch.Tensor, lengths: torch.Tensor | None = None,
                      standardize: bool = True) -> dict[int, torch.Tensor]:
        """The teacher's codebook assignments ``{layer: (B, T)}`` on the UNMASKED input, per target layer
        (1-based), in eval mode; -1 on padding frames."""
        with self._eval_student():
            wav, _, padding_mask = self._prepare(wav, lengths, standardize)
            labels = self.teacher_targets(self.features(wav, padding_mask), padding_mask=padding_mask)[0]
        if padding_mask is not None:
            labels = labels.masked_fill(padding_mask.unsqueeze(0), -1)
        return {layer: labels[k] for k, layer in enumerate(self.target_layers)}

    def codebook_predictions(
        self,
        wav: torch.Tensor,
        lengths: torch.Tensor | None = None,
        layers: int | list[int] | None = None,
        standardize: bool = True,
    ) -> dict[int, CodebookPrediction]:
        """Head posteriors and argmax units on the UNMASKED input, per target layer (1-based).

        ``layers`` name the codebook's layer (``target_layers``, 5..12 for BASE); DinoSR's heads all read
        the last layer but still predict the codebook of their own layer.
        """
        layers = self._check_layers(layers, self.target_layers, "codebook layers")
        heads = [self.target_layers.index(x) for x in layers]
        deepest = max(self.head_input_layers[h] for h in heads)
        with self._eval_student():
            wav, _, padding_mask = self._prepare(wav, lengths, standardize)
            x, reps = self.student(self.features(wav, padding_mask), padding_mask, num_layers=deepest)
        out = {}
        for layer, h, z in zip(layers, heads, self.head_inputs(x, reps, heads)):
            probs = F.softmax(self.heads[h](z).float(), dim=-1)
            units = probs.argmax(-1)
            if padding_mask is not None:
                probs = probs.masked_fill(padding_mask.unsqueeze(-1), 0.0)
                units = units.masked_fill(padding_mask, -1)
            out[layer] = CodebookPrediction(probs, units)
        return out


def step_perplexities(out: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-layer codebook and prediction perplexities (K,) of one step's outputs (possibly all-reduced)."""
    counts = out["counts"]
    cb = perplexity(counts / counts.sum(-1, keepdim=True).clamp_min(1))
    probs = out["prob_sum"] / out["num_masked"].clamp_min(1)
    return cb, perplexity(probs)


def count_parameters(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())
