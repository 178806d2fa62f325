from __future__ import annotations

import pytest

from assistant.core.errors import WeakPassword
from assistant.escalation.auth import UserStore
from assistant.escalation.passwords import check_password, common_passwords


@pytest.mark.parametrize(("password", "username", "zh"), [
    ("aaaaaaaa", None, "至少10位"),
    ("short-pw", None, "至少10位"),
    ("aaaaaaaaaa", None, "太常见"),
    ("password123", None, "太常见"),
    ("PASSWORD123", None, "太常见"),
    ("1234567890", None, "太常见"),
    ("wang.worker.a", "Wang.Worker.A", "用户名"),
    # Issue 28, hole 11: long enough, yet guessed at once (a repeat; the product's name and a run).
    ("aaaaaaaaab", None, "容易被猜到"),
    ("Linli123456", None, "容易被猜到"),
    ("qwertyuiop12", None, "容易被猜到"),
    ("wang-password", "wang", "容易被猜到"),
    ("邻里邻里邻里123456", None, "容易被猜到"),
])
def test_weak_passwords_are_refused_with_a_chinese_message(password, username, zh):
    with pytest.raises(WeakPassword) as refused:
        check_password(password, username)
    assert zh in refused.value.message("zh")
    assert refused.value.http_status == 422


def test_good_passwords_pass_and_the_list_is_shipped():
    check_password("correct-horse-battery", "wang")
    check_password("社区服务中心的密码2024", "wang")
    check_password("晴天-书包-2031", "wang")  # the example the refusal itself gives
    assert len(common_passwords()) > 1000 and "password123" in common_passwords()


def test_user_store_applies_the_policy_on_add_and_set_password(databases, tmp_path):
    users = UserStore(databases.engine(f"sqlite:///{tmp_path / 'linli.sqlite'}"))
    with pytest.raises(WeakPassword):
        users.add("wang", "password123")
    users.add("wang", "correct-horse-battery")
    with pytest.raises(WeakPassword):
        users.set_password("wang", "aaaaaaaaaa")
    assert users.authenticate("wang", "correct-horse-battery").username == "wang"
