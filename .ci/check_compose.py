"""Checks docker-compose.yml where `docker compose config` cannot run (no Docker engine): it
parses, every service has an image or a build, what a service depends on exists (and has a
healthcheck when it waits for it to be healthy), and healthchecks are commands compose runs."""

import sys

import yaml

with open(sys.argv[1] if len(sys.argv) > 1 else "docker-compose.yml") as f:
    compose = yaml.safe_load(f)

services = compose["services"]
problems = []
for name, svc in services.items():
    if "image" not in svc and "build" not in svc:
        problems.append(f"{name}: neither image nor build")
    test = svc.get("healthcheck", {}).get("test")
    if test is not None and not (
        isinstance(test, list) and test and test[0] in ("CMD", "CMD-SHELL", "NONE")
    ):
        problems.append(f"{name}: healthcheck test must be a CMD or CMD-SHELL list")
    for dep, cond in (svc.get("depends_on") or {}).items():
        if dep not in services:
            problems.append(f"{name}: depends on unknown service {dep}")
        elif cond.get("condition") == "service_healthy" and "healthcheck" not in services[dep]:
            problems.append(f"{name}: waits for {dep} to be healthy, which has no healthcheck")
for volume in compose.get("volumes") or {}:
    used = any(
        str(m).startswith(f"{volume}:") for s in services.values() for m in s.get("volumes", [])
    )
    if not used:
        problems.append(f"volume {volume} is declared and not used")

if problems:
    print("\n".join(problems), file=sys.stderr)
    sys.exit(1)
print(f"docker-compose.yml: {len(services)} services checked")
