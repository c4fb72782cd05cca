"""Plain-language labels and units for the keys of the selector's job results and training
summaries, for the jobs app's result tables (keys not listed read as words)."""

from jobs.queries import result_labels_register

result_labels_register(
    {
        "version_id": ("Version number", ""),
        "version": ("Version name", ""),
        "active": ("Became active", ""),
        "train_labels": ("Training labels", "labels"),
        "train_problems": ("Training problems", "problems"),
        "held_out_labels": ("Held-out labels", "labels"),
        "held_out_problems": ("Held-out problems", "problems"),
        "examples": ("Training examples", "solutions"),
        "labeled_steps": ("Rated steps trained on", "steps"),
        "epoch_loss": ("Loss after each epoch", ""),
        "epochs": ("Epochs", ""),
        "learning_rate": ("Learning rate", ""),
        "optimizer_steps": ("Optimizer steps", ""),
        "trainable_params": ("Trainable parameters", ""),
        "token_budget": ("Tokens per batch", "tokens"),
        "max_length": ("Model window", "tokens"),
        "truncated_steps": ("Steps past the model's window", "steps"),
        "dropped_rated_steps": ("Rated steps left out (past the window)", "steps"),
        "init_from": ("Started from", ""),
        "scored": ("Solutions scored", "solutions"),
        "reprioritized": ("Queued tasks re-prioritised", "tasks"),
        "truncated": ("Candidates past the model's window", "solutions"),
        "wrong": ("Wrong-answer candidates queued", "tasks"),
        "wrong_share": ("Share of wrong-answer candidates", ""),
        "problems": ("Problems", "problems"),
        "eval_created": ("Evaluation tasks queued (uniform draw)", "tasks"),
        "generation": ("Generation", ""),
        "per_problem": ("Tasks per problem", "tasks"),
        "rule": ("Selection rule", ""),
        "ensemble_heads": ("Step heads in the ensemble", "heads"),
        "preset": ("Preset", ""),
        "out_dir": ("Output folder", ""),
        "ratio": ("Data-efficiency ratio", "x"),
        "ci95": ("95% interval", ""),
        "threshold": ("Threshold", ""),
        "f1": ("ProcessBench F1", ""),
        "acc_erroneous": ("First-error accuracy (erroneous)", ""),
        "acc_correct": ("First-error accuracy (correct)", ""),
        "items": ("Items", ""),
    }
)
