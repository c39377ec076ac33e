"""A real Prometheus (Debian's package) scraping the lab: every exporter of ``paphosting:metrics``
(the masters' engine, the nameservers' exporters, haproxy's own), with the repository's alert
rules, on 127.0.0.1 and a free port, its data under the lab's folder (docs/monitoring.md)."""

import json
import pathlib
import shutil
import urllib.parse
import urllib.request

import yaml

from paphosting import metrics

from . import REPO, processes

RULES = REPO / "monitoring" / "prometheus" / "rules.yml"


def binary(name="prometheus"):
    """The path of ``prometheus`` or ``promtool``; RuntimeError naming the package when absent."""
    path = shutil.which(name) or (
        f"/usr/bin/{name}" if pathlib.Path(f"/usr/bin/{name}").exists() else None
    )
    if path is None:
        raise RuntimeError(
            f"{name} is not installed (Debian package prometheus; scripts/setup installs it)"
        )
    return path


def config(platform, rules=RULES):
    """prometheus.yml for ``platform``: its scrape jobs, its rules evaluated as often as scraped."""
    interval = f"{platform.metrics.get('scrape_interval', 15.0):g}s"
    return {
        "global": {"scrape_interval": interval, "evaluation_interval": interval},
        "rule_files": [str(rules)],
        "scrape_configs": metrics.scrape_configs(platform),
    }


class Prometheus:
    """One Prometheus server of the lab under ``folder``, listening on ``address:port``."""

    def __init__(self, folder, platform, address, port):
        self.folder = pathlib.Path(folder)
        self.platform = platform
        self.address = address
        self.port = port
        self.process = processes.Process(
            "prometheus",
            [
                binary(),
                f"--config.file={self.folder / 'prometheus.yml'}",
                f"--storage.tsdb.path={self.folder / 'data'}",
                f"--web.listen-address={address}:{port}",
                "--log.level=warn",
            ],
            self.folder / "prometheus.pid",
            self.folder / "prometheus.log",
        )

    @property
    def url(self):
        return f"http://{self.address}:{self.port}"

    def start(self):
        self.folder.mkdir(parents=True, exist_ok=True)
        (self.folder / "prometheus.yml").write_text(
            yaml.safe_dump(config(self.platform), sort_keys=False)
        )
        self.process.start()
        return self

    def stop(self):
        return self.process.stop()

    def api(self, path, **params):
        """``GET /api/v1/<path>``; its ``data`` (RuntimeError when Prometheus says error)."""
        query = f"?{urllib.parse.urlencode(params)}" if params else ""
        with urllib.request.urlopen(f"{self.url}/api/v1/{path}{query}", timeout=5) as resp:
            body = json.load(resp)
        if body.get("status") != "success":
            raise RuntimeError(f"Prometheus: {body}")
        return body["data"]

    def query(self, expr):
        """``{frozenset(labels): value}`` of an instant query."""
        return {
            frozenset(r["metric"].items()): float(r["value"][1])
            for r in self.api("query", query=expr)["result"]
        }

    def targets(self):
        """``{(job, server name): health}`` of the active targets."""
        names = [label for _, label in metrics.JOBS.values()]
        return {
            (
                t["labels"].get("job"),
                next((t["labels"][k] for k in names if k in t["labels"]), None),
            ): t["health"]
            for t in self.api("targets")["activeTargets"]
        }

    def alerts(self):
        """``{(alertname, label values...): state}`` of the active alerts."""
        return {
            (
                a["labels"]["alertname"],
                *sorted(v for k, v in a["labels"].items() if k not in ("alertname", "severity")),
            ): a["state"]
            for a in self.api("alerts")["alerts"]
        }
