"""Safety alignment by unlearning: harmful answers forgotten, refusals taught, judged on four harmful sets and XSTest."""
