"""The scorer's best alpha and beta on a data set, searched as Coqui's lm_optimize did (optuna's TPE).

    python -m coqui_stt_training.lm_optimize --checkpoint_dir ckpt/ --test_files dev.csv \\
        --scorer_path my.scorer [--n_trials 2400] [--lm_alpha_max 5] [--lm_beta_max 5]

The acoustic model runs once over the set; each trial only decodes (with --export_beam_width, as
evaluation does) and measures WER (CER in bytes mode). The best pair is printed in Coqui's words.
"""

from __future__ import annotations

from . import log
from .config import Config, ConfigError
from .data import load_data_set
from .decode import beam_search
from .evaluate import log_probabilities, score, totals
from .scorer import load_scorer


def lm_optimize_job(config: Config) -> None:
    from .train import setup_evaluation

    try:
        import optuna
    except ImportError:
        raise ConfigError("lm_optimize needs optuna: pip install 'coqui_stt_training[lm_optimize]'") from None
    if not config.test_files:
        raise ConfigError("You need to specify what files to use for evaluation via the --test_files flag.")
    if not config.scorer_path:
        raise ConfigError("lm_optimize needs a scorer to tune (--scorer_path)")
    model, alphabet, device = setup_evaluation(config, config.load_checkpoint_dir)
    scorer = load_scorer(config, alphabet)
    outputs = [
        pair
        for path in config.test_files
        for pair in log_probabilities(
            model, load_data_set([path], alphabet, config, "test"), config, device, config.test_batch_size
        )
    ]
    metric = "CER" if scorer.utf8_mode else "WER"  # as Coqui: a character scorer is tuned on characters

    def objective(trial) -> float:
        scorer.alpha = trial.suggest_float("lm_alpha", 0, config.lm_alpha_max)
        scorer.beta = trial.suggest_float("lm_beta", 0, config.lm_beta_max)
        results = [
            score(
                sample,
                alphabet.decode(
                    beam_search(lp, config.export_beam_width, config.cutoff_prob, config.cutoff_top_n, scorer)
                ),
                0.0,
            )
            for sample, lp in outputs
        ]
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
    from .train import run_cli

    run_cli(lm_optimize_job, argv, "python -m coqui_stt_training.lm_optimize")


if __name__ == "__main__":
    main()
