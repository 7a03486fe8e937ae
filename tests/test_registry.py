"""One registry mechanism for tasks, operators and loggers: the name written once, in the decorator."""

from dataclasses import dataclass

import pytest
from hydra.core.config_store import ConfigStore

from corp.config import register_configs
from corp.consolidate.base import OPERATORS, Operator
from corp.observe.callbacks import LOGGERS, Callback
from corp.registry import Registry
from corp.tasks.base import TASKS, Task, TaskConfig
from tests.conftest import ROOT


@dataclass
class EchoConfig(TaskConfig):
    name: str = "echo"


class Echo(Task):
    config_class = EchoConfig


def test_the_decorator_names_the_class_and_refuses_what_would_clash():
    registry: Registry[Task] = Registry("task", "task", Task)
    assert registry.register("echo")(Echo) is Echo and Echo.name == "echo" and list(registry) == ["echo"]
    with pytest.raises(ValueError, match="task 'echo' registered twice"):
        registry.register("echo")(Echo)
    with pytest.raises(ValueError, match="task 'other': EchoConfig.name defaults to 'echo'"):
        registry.register("other")(Echo)
    with pytest.raises(TypeError, match="task 'dict': dict is not a Task"):
        registry.register("dict")(dict)


def test_an_unknown_name_is_refused_naming_the_choice_and_what_exists():
    with pytest.raises(ValueError) as one:
        TASKS.build("nope", EchoConfig(name="nope"))
    assert str(one.value) == f"task.name='nope' is not a registered task; allowed: {', '.join(sorted(TASKS))}"
    with pytest.raises(ValueError, match=r"^logger\.mine is not a registered logger; allowed: csv, mlflow, "):
        LOGGERS["mine"]


@pytest.mark.parametrize("registry, base", [(TASKS, Task), (OPERATORS, Operator), (LOGGERS, Callback)])
def test_every_member_has_its_schema_in_the_config_store_and_its_file_under_conf(registry, base):
    register_configs()
    repo = ConfigStore.instance().repo
    for name, cls in registry.items():
        assert issubclass(cls, base) and cls.name == name
        assert f"{registry.group}_{name}_schema.yaml" in repo, name
        assert (ROOT / "conf" / registry.group / f"{name}.yaml").exists(), name


def test_operators_are_listed_in_report_order_baselines_first():
    assert list(OPERATORS) == ["randopt", "es", "soup", "corp"]
