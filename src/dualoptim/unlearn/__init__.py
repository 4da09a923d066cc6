"""The unlearning loop, schedules of forget and retain steps, and masks."""
