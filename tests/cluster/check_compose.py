#!/usr/bin/env python3
"""Check docker-compose.yml against the native harness's topology.

Usage: tests/cluster/cluster topology | check_compose.py docker-compose.yml

The topology (stdin) is what `tests/cluster/cluster topology` prints, one fact per line:
  <backend> version <major.minor>        the image tag's default must be in that series
  <backend> published <role>             the role whose port is published on the host
  <backend> <i> name <service>           one compose service per node
  <backend> <i> <role> <port>            host ports (only the published role's is mapped)
  <backend> <setting> <value>            a server setting the containers must use too

Every mismatch is reported on its own line; the exit status is 1 if there is any.
Called by `tests/cluster/cluster check-compose` with PyYAML from its venv.
"""

import json
import re
import sys
from collections import defaultdict

import yaml

# The port each image listens on inside its container, per role.
CONTAINER_PORTS = {
    "etcd": {"client": 2379, "peer": 2380},
    "consul": {"http": 8500, "server": 8300, "serf_lan": 8301, "serf_wan": 8302},
    "zookeeper": {"client": 2181, "quorum": 2888, "election": 3888},
}
# The image each backend must use (the tag is checked against "<backend> version").
IMAGES = {
    "etcd": ("gcr.io/etcd-development/etcd", "quay.io/coreos/etcd"),
    "consul": ("hashicorp/consul",),
    "zookeeper": ("zookeeper", "library/zookeeper", "docker.io/library/zookeeper"),
}
# zoo.cfg keys that the zookeeper image's entrypoint writes from its own variables.
ZOO_ENV = {
    "tickTime": "ZOO_TICK_TIME",
    "initLimit": "ZOO_INIT_LIMIT",
    "syncLimit": "ZOO_SYNC_LIMIT",
    "4lw.commands.whitelist": "ZOO_4LW_COMMANDS_WHITELIST",
    "admin.enableServer": "ZOO_ADMINSERVER_ENABLED",
    "standaloneEnabled": "ZOO_STANDALONE_ENABLED",
    "maxClientCnxns": "ZOO_MAX_CLIENT_CNXNS",
}

errors = []


def err(msg):
    errors.append(msg)


def interpolate(value):
    """Compose-style ${VAR:-default} / ${VAR-default} / ${VAR} with every variable unset."""
    if not isinstance(value, str):
        return value

    def sub(m):
        body = m.group(1)
        for sep in (":-", "-"):
            if sep in body:
                return body.split(sep, 1)[1]
        return ""

    return re.sub(r"\$\{([^}]*)\}", sub, value.replace("$$", "\0")).replace("\0", "$")


def env_of(svc):
    env = svc.get("environment") or {}
    if isinstance(env, list):
        out = {}
        for item in env:
            k, _, v = str(item).partition("=")
            out[k] = v
        env = out
    return {str(k): interpolate("" if v is None else str(v)) for k, v in env.items()}


def command_of(svc):
    cmd = svc.get("command") or []
    if isinstance(cmd, str):
        cmd = cmd.split()
    return [interpolate(str(c)) for c in cmd]


def flags(cmd):
    """--flag value / --flag=value / -flag=value -> {flag: [values]}"""
    out = defaultdict(list)
    i = 0
    while i < len(cmd):
        a = cmd[i]
        if a.startswith("-"):
            name = a.lstrip("-")
            if "=" in name:
                k, v = name.split("=", 1)
                out[k].append(v)
            elif i + 1 < len(cmd) and not cmd[i + 1].startswith("-"):
                out[name].append(cmd[i + 1])
                i += 1
            else:
                out[name].append("true")
        i += 1
    return out


def published(svc):
    """[(host_ip, host_port, container_port)] from short or long port syntax."""
    out = []
    for p in svc.get("ports") or []:
        if isinstance(p, dict):
            out.append((str(p.get("host_ip", "")), str(interpolate(str(p.get("published", "")))),
                        str(p.get("target"))))
            continue
        s = interpolate(str(p)).split("/")[0]
        parts = s.rsplit(":", 2)
        if len(parts) == 3:
            out.append((parts[0], parts[1], parts[2]))
        elif len(parts) == 2:
            out.append(("", parts[0], parts[1]))
        else:
            out.append(("", "", parts[0]))
    return out


def same(a, b):
    return str(a).strip().lower() == str(b).strip().lower()


def read_topology(lines):
    topo = defaultdict(lambda: {"nodes": defaultdict(dict), "settings": {}})
    for raw in lines:
        f = raw.split()
        if not f:
            continue
        if len(f) == 4 and f[1].isdigit():
            topo[f[0]]["nodes"][int(f[1])][f[2]] = f[3]
        elif len(f) == 3:
            topo[f[0]]["settings"][f[1]] = f[2]
        else:
            err(f"topology: cannot read line {raw.strip()!r}")
    return topo


def check_image(svc_name, svc, backend, version):
    image = str(svc.get("image", ""))
    m = re.fullmatch(r"([^:${}]+(?::\d+)?(?:/[^:${}]+)*):(.+)", image)
    if not m:
        err(f"{svc_name}: image {image!r} has no tag")
        return
    repo, tag = m.group(1), m.group(2)
    if repo not in IMAGES[backend]:
        err(f"{svc_name}: image {repo!r} is not one of {', '.join(IMAGES[backend])}")
    if not re.fullmatch(r"\$\{[A-Z_]+_VERSION:-[^}]+\}", tag):
        err(f"{svc_name}: image tag {tag!r} is not an overridable ${{<NAME>_VERSION:-<pinned tag>}}")
    pinned = interpolate(tag).lstrip("v")
    if not (pinned == version or pinned.startswith(version + ".")):
        err(f"{svc_name}: pinned tag {interpolate(tag)!r} is not in the {version}.x series of the native servers")


def check_ports(svc_name, svc, backend, node, published_role):
    want_host = node.get(published_role)
    want_target = str(CONTAINER_PORTS[backend][published_role])
    ports = published(svc)
    if not ports:
        err(f"{svc_name}: publishes no port; topology says 127.0.0.1:{want_host}->{want_target}")
    for host_ip, host, target in ports:
        if host_ip != "127.0.0.1":
            err(f"{svc_name}: port {host}:{target} is bound to {host_ip or 'all addresses'}, not 127.0.0.1")
        if target != want_target or host != want_host:
            err(f"{svc_name}: publishes {host}->{target}; topology says {published_role} port "
                f"{want_host}->{want_target}")


def check_etcd(svc_name, svc, i, node, settings, names):
    env = env_of(svc)
    fl = flags(command_of(svc))

    def get(key):  # a flag on the command line wins over ETCD_<KEY>
        if key in fl:
            return fl[key][-1]
        return env.get("ETCD_" + key.upper().replace("-", "_"))

    def expect(key, want):
        got = get(key)
        if got is None or not same(got, want):
            err(f"{svc_name}: etcd --{key} is {got!r}; topology says {want!r}")

    expect("name", node["name"])
    expect("advertise-client-urls", f"http://127.0.0.1:{node['client']}")
    expect("initial-advertise-peer-urls", f"http://{svc_name}:{CONTAINER_PORTS['etcd']['peer']}")
    cluster = ",".join(f"{n}=http://{n}:{CONTAINER_PORTS['etcd']['peer']}" for n in names)
    expect("initial-cluster", cluster)
    for key, want in settings.items():
        if key in ("version", "published"):
            continue
        expect(key, want)


def check_consul(svc_name, svc, i, node, settings, names):
    env = env_of(svc)
    fl = flags(command_of(svc)[1:] if command_of(svc)[:1] == ["agent"] else command_of(svc))
    try:
        conf = json.loads(env.get("CONSUL_LOCAL_CONFIG", "{}"))
    except json.JSONDecodeError as e:
        err(f"{svc_name}: CONSUL_LOCAL_CONFIG is not JSON: {e}")
        conf = {}
    node_name = (fl.get("node") or [conf.get("node_name")])[-1]
    if node_name != node["name"]:
        err(f"{svc_name}: consul node name is {node_name!r}; topology says {node['name']!r}")
    joins = set(fl.get("retry-join", [])) | set(conf.get("retry_join", []))
    others = set(names) - {svc_name}
    if not others <= joins:
        err(f"{svc_name}: consul retry-join {sorted(joins)} misses {sorted(others - joins)}")
    for key, want in settings.items():
        if key in ("version", "published"):
            continue
        if key in fl:
            got = fl[key][-1]
        elif key in conf:
            got = conf[key]
        elif key in (conf.get("performance") or {}):
            got = conf["performance"][key]
        elif key in (conf.get("ports") or {}):
            got = conf["ports"][key]
        elif key in (conf.get("limits") or {}):
            got = conf["limits"][key]
        else:
            got = None
        if got is None or not same(json.dumps(got) if not isinstance(got, str) else got, want):
            err(f"{svc_name}: consul {key} is {got!r}; topology says {want!r}")


def check_zookeeper(svc_name, svc, i, node, settings, names):
    env = env_of(svc)
    # what the image's entrypoint writes into zoo.cfg
    cfg = {}
    for key, var in ZOO_ENV.items():
        if var in env:
            cfg[key] = env[var]
    for entry in env.get("ZOO_CFG_EXTRA", "").split():
        k, _, v = entry.partition("=")
        cfg[k] = v
    if env.get("ZOO_MY_ID") != str(i):
        err(f"{svc_name}: ZOO_MY_ID is {env.get('ZOO_MY_ID')!r}; it is node {i}")
    servers = sorted(env.get("ZOO_SERVERS", "").split())
    cp = CONTAINER_PORTS["zookeeper"]
    want_servers = sorted(f"server.{j}={n}:{cp['quorum']}:{cp['election']};{cp['client']}"
                          for j, n in enumerate(names, 1))
    if servers != want_servers:
        err(f"{svc_name}: ZOO_SERVERS is {' '.join(servers)!r}; expected {' '.join(want_servers)!r}")
    hostname = svc.get("hostname", svc_name)
    if hostname != svc_name:
        err(f"{svc_name}: hostname {hostname!r} differs from the name used in ZOO_SERVERS")
    for key, want in settings.items():
        if key in ("version", "published"):
            continue
        got = cfg.get(key)
        if got is None or not same(got, want):
            err(f"{svc_name}: zoo.cfg {key} would be {got!r}; topology says {want!r}")


CHECKS = {"etcd": check_etcd, "consul": check_consul, "zookeeper": check_zookeeper}


def main():
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    path = sys.argv[1]
    topo = read_topology(sys.stdin.read().splitlines())
    with open(path) as fh:
        compose = yaml.safe_load(fh)
    services = compose.get("services") or {}

    expected = set()
    for backend, t in topo.items():
        if backend not in CHECKS:
            err(f"topology: unknown backend {backend!r}")
            continue
        names = [t["nodes"][i]["name"] for i in sorted(t["nodes"])]
        expected.update(names)
        version = t["settings"].get("version", "")
        published_role = t["settings"].get("published")
        for i in sorted(t["nodes"]):
            node = t["nodes"][i]
            name = node["name"]
            svc = services.get(name)
            if svc is None:
                err(f"service {name!r} ({backend} node {i}) is missing")
                continue
            if not (svc.get("healthcheck") or {}).get("test"):
                err(f"{name}: has no healthcheck")
            check_image(name, svc, backend, version)
            check_ports(name, svc, backend, node, published_role)
            CHECKS[backend](name, svc, i, node, t["settings"], names)
    for extra in sorted(set(services) - expected):
        err(f"service {extra!r} is not in the topology")

    for e in errors:
        print(f"{path}: {e}", file=sys.stderr)
    if errors:
        print(f"{path}: {len(errors)} mismatch(es) with `tests/cluster/cluster topology`", file=sys.stderr)
        return 1
    print(f"{path}: {len(expected)} services match the topology (names, host ports, settings, images)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
