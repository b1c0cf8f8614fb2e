"""A trained run, as every command sees it: its directory and lock (``run_dir``), loading it back
(``checkpoint``), its wandb run (``wandb_job``), and the files evaluation writes there (``results``,
``label_maps``). Training, evaluation, drawing and the report share these; none of them owns them."""
