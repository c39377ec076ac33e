"""The svn command-line wrapper: XML parsing, error classification, and a real repository (file://)."""

import os
import subprocess

import pytest

from paphosting import svn
from tests.conftest import require_binary

INFO_XML = """<?xml version="1.0" encoding="UTF-8"?>
<info>
<entry kind="dir" path="pillar" revision="7">
<url>svn://127.0.0.1:3690/platform/pillar</url>
<commit revision="5">
<author>alice</author>
<date>2026-01-31T12:00:00.123456Z</date>
</commit>
</entry>
</info>
"""

LOG_XML = """<?xml version="1.0" encoding="UTF-8"?>
<log>
<logentry revision="9">
<revprops>
<property name="svn:author">bob</property>
<property name="svn:date">2026-02-01T10:00:00.000000Z</property>
<property name="svn:log">raise the
www port</property>
</revprops>
</logentry>
<logentry revision="8">
<revprops>
<property name="svn:author">alice</property>
<property name="svn:date">2026-02-01T09:00:00.000000Z</property>
<property name="svn:log">add a zone</property>
<property name="paphosting:pushed">nl 2026-02-01T09:01:00Z</property>
</revprops>
</logentry>
<logentry revision="7">
<author>carol</author>
<date>2026-01-01T00:00:00.000000Z</date>
<msg>plain log</msg>
</logentry>
</log>
"""


def test_parse_info_gives_the_last_changed_revision():
    rev = svn.parse_info(INFO_XML)
    assert (rev.number, rev.author, rev.date) == (5, "alice", "2026-01-31T12:00:00.123456Z")


def test_parse_log_reads_revprops_and_plain_entries():
    revs = svn.parse_log(LOG_XML)
    assert [r.number for r in revs] == [9, 8, 7]
    assert (
        revs[0].author == "bob"
        and revs[0].message == "raise the\nwww port"
        and revs[0].pushed is None
    )
    assert revs[1].pushed == "nl 2026-02-01T09:01:00Z"
    assert "svn:author" not in revs[1].props
    assert (revs[2].author, revs[2].message) == ("carol", "plain log")


@pytest.mark.parametrize(
    "stderr, kind, words",
    [
        (
            "svn: E170013: Unable to connect to a repository at URL 'svn://127.0.0.1:1/x'\n"
            "svn: E000111: Can't connect to host '127.0.0.1': Connection refused\n",
            svn.Unreachable,
            ["unreachable", "Connection refused"],
        ),
        (
            "svn: E170013: Unable to connect to a repository at URL 'svn://nohost.invalid/x'\n"
            "svn: E670002: Unknown hostname 'nohost.invalid'\n",
            svn.Unreachable,
            ["Unknown hostname"],
        ),
        (
            "svn: warning: W170000: URL 'svn://h/platform/nope' non-existent in revision 3\n\n"
            "svn: E200009: Could not display info for all targets because some targets don't exist\n",
            svn.NotFound,
            ["non-existent in revision 3", "check the repository URL"],
        ),
        (
            "svn: E170013: Unable to connect to a repository at URL 'svn://h/wrong'\n"
            "svn: E210005: No repository found in 'svn://h/wrong'\n",
            svn.NotFound,
            ["No repository found"],
        ),
        ("svn: E160006: No such revision 99\n", svn.NoSuchRevision, ["No such revision 99"]),
        (
            "svn: E170001: Can't get username or password\n",
            svn.Denied,
            ["refused", "username or password"],
        ),
        (
            "svn: E165001: Revprop change blocked by pre-revprop-change hook (exit code 1) with output:\nnope\n",
            svn.Denied,
            ["pre-revprop-change"],
        ),
        ("svn: E999999: something new\n", svn.SvnError, ["something new"]),
    ],
)
def test_errors_are_classified_with_svn_message(stderr, kind, words):
    err = svn._error("read", "svn://h/platform", stderr)
    assert type(err) is kind
    for word in words:
        assert word in str(err)


def test_join():
    assert svn.join("svn://h/r/", "/pillar/") == "svn://h/r/pillar"
    assert svn.join("svn://h/r", "") == "svn://h/r"


@pytest.fixture(scope="module")
def repo(tmp_path_factory):
    """A real repository reached over file:// (no daemon), with the revprop hook."""
    require_binary("svnadmin")
    root = tmp_path_factory.mktemp("svn")
    path = root / "repo"
    subprocess.run(["svnadmin", "create", str(path)], check=True)
    hook = path / "hooks" / "pre-revprop-change"
    hook.write_text('#!/bin/sh\n[ "$4" = "paphosting:pushed" ] && exit 0\nexit 1\n')
    hook.chmod(0o755)
    url = f"file://{path}"
    cfg = str(root / "cfg")

    def run(*args):
        subprocess.run(
            ["svn", "--non-interactive", "--config-dir", cfg, *args],
            check=True,
            capture_output=True,
        )

    wc = root / "wc"
    run("checkout", "-q", url, str(wc))
    (wc / "pillar").mkdir()
    (wc / "pillar" / "top.sls").write_text("base: {'*': [paphosting]}\n")
    run("add", "-q", str(wc / "pillar"))
    run("commit", "-q", "-m", "r1: the pillar", str(wc))  # r1
    (wc / "README").write_text("not the pillar\n")
    run("add", "-q", str(wc / "README"))
    run("commit", "-q", "-m", "r2: a readme", str(wc))  # r2: pillar unchanged
    (wc / "pillar" / "paphosting.sls").write_text("paphosting: {}\n")
    run("add", "-q", str(wc / "pillar" / "paphosting.sls"))
    run("commit", "-q", "-m", "r3: the platform", str(wc))  # r3
    (wc / "README").write_text("still not the pillar\n")
    run("commit", "-q", "-m", "r4: readme again", str(wc))  # r4
    return svn.Client(url, config_dir=cfg, timeout=20)


def test_revision_is_the_last_change_of_the_pillar_path(repo):
    assert repo.info("pillar").number == 3
    rev = repo.revision("pillar", 2)
    assert (rev.number, rev.message) == (1, "r1: the pillar")


def test_export_a_revision(repo, tmp_path):
    repo.export("pillar", 1, str(tmp_path / "r1"))
    assert sorted(os.listdir(tmp_path / "r1")) == ["top.sls"]
    repo.export("pillar", 3, str(tmp_path / "r3"))
    assert sorted(os.listdir(tmp_path / "r3")) == ["paphosting.sls", "top.sls"]


def test_newest_pushed_scans_only_newer_revisions(repo):
    assert repo.newest_pushed("pillar") is None
    repo.mark_pushed(1, "nl 2026-01-01T00:00:00Z")
    assert repo.newest_pushed("pillar").number == 1
    assert repo.newest_pushed("pillar", newer_than=1) is None
    repo.mark_pushed(3, "ch 2026-01-02T00:00:00Z")
    found = repo.newest_pushed("pillar")
    assert (found.number, found.pushed) == (3, "ch 2026-01-02T00:00:00Z")
    assert repo.newest_pushed("pillar", newer_than=3) is None
    assert repo.newest_pushed("pillar", newer_than=1, page=1).number == 3


def test_missing_revision_and_path_are_clear(repo):
    with pytest.raises(svn.NoSuchRevision, match="No such revision 42"):
        repo.revision("pillar", 42)
    with pytest.raises(svn.NotFound, match="nope"):
        repo.info("nope")
    with pytest.raises(svn.NotFound):
        svn.Client(repo.url + "-wrong", config_dir=repo.config_dir).info("pillar")


def test_unreachable_server_fails_at_once(loopback):
    port = loopback.port("127.0.0.1")  # nothing listens there
    with pytest.raises(svn.Unreachable, match="Connection refused"):
        svn.Client(f"svn://127.0.0.1:{port}/platform", timeout=5).info("pillar")


def test_a_server_that_does_not_answer_times_out(loopback):
    import socket

    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(1)  # accepts the connection, never speaks
    try:
        port = listener.getsockname()[1]
        with pytest.raises(svn.Unreachable, match="no answer within 1 s"):
            svn.Client(f"svn://127.0.0.1:{port}/platform", timeout=1).info("pillar")
    finally:
        listener.close()


def test_hook_refusal_is_denied(repo):
    with pytest.raises(svn.Denied):
        repo._run(
            "set svn:log on",
            repo.url,
            ["propset", "--revprop", "-r", "1", "svn:log", "x", repo.url],
        )


@pytest.fixture
def empty_repo(tmp_path):
    """An empty repository over file://, for the commands that commit (svnmucc) and lock."""
    require_binary("svnmucc")
    path = tmp_path / "repo"
    subprocess.run(["svnadmin", "create", str(path)], check=True)
    return svn.Client(f"file://{path}", config_dir=str(tmp_path / "cfg"), timeout=20)


def test_put_commits_without_a_working_copy_and_cat_reads_it_back(empty_repo):
    rev = empty_repo.put({"pillar/secrets/tls/www.asc": "one\n"}, "the www certificate")
    assert rev == 1
    assert empty_repo.cat("pillar/secrets/tls/www.asc") == "one\n"
    assert empty_repo.cat("pillar/secrets/tls/shop.asc") is None
    rev = empty_repo.put(
        {"pillar/secrets/tls/www.asc": "two\n", "pillar/secrets/acme/account.asc": "key\n"},
        "both at once",
    )
    assert rev == 2
    assert empty_repo.cat("pillar/secrets/tls/www.asc", rev=1) == "one\n"
    assert empty_repo.info("pillar/secrets/tls").number == 2


def test_put_decided_on_an_old_revision_fails_when_the_file_appeared_since(empty_repo):
    empty_repo.put({"pillar/top.sls": "base: {}\n"}, "r1")
    empty_repo.put({"pillar/secrets/acme/account.asc": "first\n"}, "r2: one master's key")
    with pytest.raises(svn.SvnError):
        empty_repo.put({"pillar/secrets/acme/account.asc": "second\n"}, "the other's", base=1)
    assert empty_repo.cat("pillar/secrets/acme/account.asc") == "first\n"


def test_a_lock_is_exclusive_until_released_or_stolen(empty_repo):
    path = "pillar/secrets/acme/account.asc"
    empty_repo.put({path: "key\n"}, "the account key")
    assert empty_repo.lock_info(path) is None
    empty_repo.lock(path, "nl 100.0 tls issuance")
    assert empty_repo.lock_info(path)["comment"] == "nl 100.0 tls issuance"
    with pytest.raises(svn.Locked):
        empty_repo.lock(path, "ch 101.0 tls issuance")
    empty_repo.lock(path, "ch 102.0 tls issuance", steal=True)
    assert empty_repo.lock_info(path)["comment"] == "ch 102.0 tls issuance"
    empty_repo.unlock(path)
    assert empty_repo.lock_info(path) is None
