"""Names of the built-in demo deployment, for tests that write store rows by hand."""

from inference.task import demo_task_path, load_tasks

DEMO_TASKS = load_tasks(demo_task_path())
DEMO_TASK = DEMO_TASKS.routing_name  # the routing task: the one a single-task store's rows belong to
