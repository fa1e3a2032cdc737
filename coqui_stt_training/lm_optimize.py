"""The scorer's best alpha and beta on a data set, searched as Coqui's lm_optimize did (optuna's TPE).

    python -m coqui_stt_training.lm_optimize --checkpoint_dir ckpt/ --test_files dev.csv \\
        --scorer_path my.scorer [--n_trials 2400] [--lm_alpha_max 5] [--lm_beta_max 5]

The acoustic model runs once over the set; each trial only decodes (with --export_beam_width, as
evaluation does) and measures WER (CER in bytes mode). The best pair is printed in Coqui's words.
"""

from __future__ import annotations

from .decoding.beam_search import beam_search
from .decoding.evaluation import probabilities, score, totals
from .flags.cli import run_cli
from .flags.config import LM_OPTIMIZE_FLAGS, Config
from .flags.options import decode_options, loader_settings
from .flags.services import data_set, model_for, scorer_for
from .system import log
from .system.errors import ConfigError


def lm_optimize_job(config: Config) -> None:
    try:
        import optuna  # the lm_optimize extra: only this tool needs it
    except ImportError:
        raise ConfigError("lm_optimize needs optuna: pip install 'coqui-stt-torch[lm_optimize]'") from None
    if not config.test_files:
        raise ConfigError("You need to specify what files to use for evaluation via the --test_files flag.")
    if not config.scorer_path:
        raise ConfigError("lm_optimize needs a scorer to tune (--scorer_path)")
    loaded = model_for(config, config.load_checkpoint_dir)
    alphabet, scorer = loaded.alphabet, scorer_for(config, loaded.alphabet)
    assert scorer is not None  # --scorer_path is set
    loader, batch_size = loader_settings(config), config.test_batch_size
    outputs = [
        pair
        for path in config.test_files
        for pair in probabilities(
            loaded.model, data_set(config, [path], alphabet, "test"), loaded.device, batch_size, loader
        )
    ]
    options = decode_options(config, config.export_beam_width)
    metric = "CER" if scorer.utf8_mode else "WER"  # as Coqui: a character scorer is tuned on characters

    def objective(trial) -> float:
        alpha = trial.suggest_float("lm_alpha", 0, config.lm_alpha_max)
        scorer.set_weights(alpha, trial.suggest_float("lm_beta", 0, config.lm_beta_max))
        results = [score(sample, alphabet.decode(beam_search(p, options, scorer)), 0.0) for sample, p in outputs]
        wer, cer, _ = totals(results)
        return cer if scorer.utf8_mode else wer

    log.info(
        f"Searching lm_alpha in [0, {config.lm_alpha_max}] and lm_beta in [0, {config.lm_beta_max}] over "
        f"{len(outputs)} sample(s), {config.n_trials} trial(s)"
    )
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(sampler=optuna.samplers.TPESampler(seed=config.random_seed))
    study.optimize(objective, n_trials=config.n_trials, show_progress_bar=config.show_progressbar)
    best = study.best_params
    print(
        f"Best params: lm_alpha={best['lm_alpha']} and lm_beta={best['lm_beta']} with {metric}={study.best_value}",
        flush=True,
    )


def main(argv: list[str] | None = None) -> None:
    run_cli(lm_optimize_job, argv, "python -m coqui_stt_training.lm_optimize", LM_OPTIMIZE_FLAGS)


if __name__ == "__main__":
    main()
