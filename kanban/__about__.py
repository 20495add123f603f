__version__ = "0.1.0"
# The name on the package index (`pip install kanban-dispatch`): `kanban` there is an unrelated
# project. The command and the import package are `kanban`.
DISTRIBUTION = "kanban-dispatch"
