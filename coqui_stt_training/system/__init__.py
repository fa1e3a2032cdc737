"""What any tool needs from the machine: errors, logs, files, workers, signals, processes."""
