"""The small option objects the library takes instead of the whole Config, each made from the flags it
needs: features, decoding, batches, testing, export, transcription's segmentation, and the training
loop's settings."""

from __future__ import annotations

import math

from ..decoding.beam_search import DecodeOptions
from ..decoding.evaluation import EvaluationSettings
from ..decoding.transcription import Segmentation
from ..exports.directory import ExportSettings, ModelCard
from ..feeding.augment import parse_augmentations
from ..feeding.batches import LoaderSettings
from ..model.features import FeatureSettings
from ..system.errors import ConfigError
from ..training.settings import (
    AdamSettings,
    ModelSettings,
    SavingSettings,
    ScheduleSettings,
    TrainingSettings,
    TransferSettings,
)
from .config import Config


def feature_settings(config: Config) -> FeatureSettings:
    return FeatureSettings(config.audio_sample_rate, config.feature_win_len, config.feature_win_step)


def decode_options(config: Config, beam_width: int) -> DecodeOptions:
    """Beam search with the --cutoff_* pruning; Coqui tests with --export_beam_width and transcribes with
    --beam_width."""
    return DecodeOptions(beam_width, config.cutoff_prob, config.cutoff_top_n, parse_hot_words(config.hot_words))


def loader_settings(config: Config) -> LoaderSettings:
    return LoaderSettings(
        feature_settings(config),
        config.feature_cache,
        config.cache_for_epochs,
        config.data_workers,
        config.shuffle_batches,
        config.shuffle_start,
        config.random_seed,
        tuple(parse_augmentations(config.augment)),
        config.epochs,
        config.rehearsal_augment,
    )


def evaluation_settings(config: Config) -> EvaluationSettings:
    return EvaluationSettings(
        config.test_batch_size, config.limit_test, config.reverse_test, config.report_count, config.test_output_file
    )


def export_settings(config: Config) -> ExportSettings:
    card = ModelCard(
        config.export_author_id,
        config.export_model_name,
        config.export_model_version,
        config.export_contact_info,
        config.export_license,
        config.export_language,
        config.export_min_stt_version,
        config.export_max_stt_version,
        config.export_description,
    )
    return ExportSettings(
        config.export_dir,
        config.export_file_name,
        config.remove_export,
        config.n_steps,
        config.export_beam_width,
        feature_settings(config),
        config.export_tflite,
        config.export_quantize,
        config.export_onnx,
        config.export_zip,
        config.scorer_path,
        card,
    )


def segmentation(config: Config) -> Segmentation:
    return Segmentation(
        config.vad_aggressiveness, config.batch_size, config.outlier_duration_ms, config.outlier_batch_size
    )


def model_settings(config: Config) -> ModelSettings:
    dropout = (config.dropout_rate, config.dropout_rate2, config.dropout_rate3, config.dropout_rate6)
    return ModelSettings(config.n_hidden, config.layer_norm, config.relu_clip, dropout, config.random_seed)


def adam_settings(config: Config) -> AdamSettings:
    return AdamSettings(
        config.learning_rate, config.beta1, config.beta2, config.epsilon, config.force_initialize_learning_rate
    )


def training_settings(config: Config) -> TrainingSettings:
    return TrainingSettings(
        model_settings(config),
        adam_settings(config),
        TransferSettings(config.keep_shared_symbols, config.freeze_source_layers, config.source_layers_lr_scale),
        ScheduleSettings(
            config.epochs,
            config.early_stop,
            config.es_epochs,
            config.es_min_delta,
            config.reduce_lr_on_plateau,
            config.plateau_epochs,
            config.plateau_reduction,
        ),
        SavingSettings(config.save_checkpoint_dir, config.checkpoint_secs, config.max_to_keep),
        loader_settings(config),
        config.train_batch_size,
        config.dev_batch_size,
        config.skip_batch_test,
        config.automatic_mixed_precision,
        config.summary_dir,
        config.show_progressbar,
    )


def parse_hot_words(text: str) -> tuple[tuple[str, float], ...]:
    """--hot_words "word:boost,word:boost" as (word, boost) pairs; a word given twice is refused, as Coqui's
    STT_AddHotWord refuses it."""
    pairs: dict[str, float] = {}
    for item in filter(None, text.split(",")):
        word, colon, boost = item.rpartition(":")
        try:
            value = float(boost)
        except ValueError:
            value = math.nan
        if not colon or not word or not math.isfinite(value):
            raise ConfigError(
                f"--hot_words {text!r}: {item!r} is not word:boost (e.g. --hot_words friday:5.5,sunday:-2)"
            )
        if word in pairs:
            raise ConfigError(f"--hot_words {text!r}: {word!r} is given twice")
        pairs[word] = value
    return tuple(pairs.items())
