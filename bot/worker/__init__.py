"""What the workers run: the suggest job, the shadow runner, the upkeep chores and the train-job entry."""
