"""Memory plans: what a fine-tuning run holds per device, whether it fits, and how
far batch_size and seq_length can go (`mindsft plan`)."""
