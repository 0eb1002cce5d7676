"""``sitsmon monitor run|replay|status``: the streaming monitor.

run      consume ``sits.acquisitions`` (Kafka consumer group or the in-process bus) and fold every
         acquisition into its tile's encoder and detector states; alerts go to the store and the sinks
         (``sits.alerts`` topic, the signed webhook of ``[alerts]``) as they are raised, then the bus
         offset is committed. ``--once`` drains what is there and exits. Kill-safe: restart and it
         continues with the same states and the same alerts (docs/streaming.md).
replay   recompute a period from the parcel-series store without the bus (backfill, or reprocessing
         with ``--checkpoint NEW``: a new state namespace, alerts tagged with the new model version,
         the old ones left readable).
status   state bytes per parcel, the last acquisition folded in per tile, lag per partition, last error.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from sitsmon.settings import Settings


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser("monitor", help="the streaming update loop: run, replay, status",
                            description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    cmds = parser.add_subparsers(dest="monitor_command", metavar="SUBCOMMAND", required=True)

    def common(p: argparse.ArgumentParser) -> None:
        p.add_argument("--data-dir", type=Path, default=None, help="default: [paths] data_dir")
        p.add_argument("--parcels", default=None, help="parcel layer (default: [monitor] parcels, [ingest] parcels)")
        p.add_argument("--checkpoint", type=Path, default=None, help="encoder checkpoint (default: [encoder])")
        p.add_argument("--detectors", default=None, help="comma-separated (default: [monitor] detectors)")

    run_p = cmds.add_parser("run", help="consume acquisition events and fold them in")
    common(run_p)
    run_p.add_argument("--once", action="store_true", help="drain what is on the bus, then exit")
    run_p.add_argument("--metrics-port", type=int, default=None, help="Prometheus port (default: [monitor])")
    run_p.add_argument("--quiet", action="store_true", help="no line per acquisition")
    run_p.set_defaults(handler=run)

    replay_p = cmds.add_parser("replay", help="recompute a period from the series store (no bus)")
    common(replay_p)
    replay_p.add_argument("--start", required=True, help="first acquisition date (ISO)")
    replay_p.add_argument("--end", required=True, help="last acquisition date (ISO, inclusive)")
    replay_p.add_argument("--tiles", default="", help="comma-separated tile ids (default: every tile)")
    replay_p.add_argument("--scheduler", default=None, metavar="ADDRESS",
                          help="run one task per tile on Dask distributed: a scheduler address (tcp://host:8786) "
                               "or 'local' for a LocalCluster here (default: [dask] scheduler; empty: this process)")
    replay_p.add_argument("--workers", type=int, default=None,
                          help="LocalCluster worker processes with --scheduler local (default: [dask] workers)")
    replay_p.add_argument("--form", choices=("chunk", "parallel", "recurrent"), default="chunk",
                          help="the encoder's form: blocks of acquisitions through the chunkwise (default) or "
                               "parallel form, or the stream's recurrent step (docs/streaming.md, Replay)")
    replay_p.add_argument("--block-size", type=int, default=None,
                          help="acquisitions per block (default 32)")
    replay_p.add_argument("--rewind-points", choices=("stream", "blocks"), default="blocks",
                          help="'blocks' (default): one at each block's end (one state write per block, faster); "
                               "'stream': keep the rewind points the stream would keep (blocks end there)")
    replay_p.set_defaults(handler=replay)

    status_p = cmds.add_parser("status", help="states, lag, last error (JSON)")
    status_p.add_argument("--data-dir", type=Path, default=None, help="default: [paths] data_dir")
    status_p.set_defaults(handler=status)


def monitor_config(args: argparse.Namespace, settings: Settings, data_dir: Path | None = None):
    from monitor.config import MonitorConfig

    root = (data_dir or getattr(args, "data_dir", None) or settings.paths.data_dir).resolve()
    parcels = getattr(args, "parcels", None) or settings.monitor.parcels or settings.ingest.parcels or None
    detectors = getattr(args, "detectors", None)
    checkpoint = getattr(args, "checkpoint", None) or settings.encoder.checkpoint
    port = getattr(args, "metrics_port", None)
    return MonitorConfig(
        data_dir=root, series_dir=(settings.storage.series_url or settings.ingest.series_dir or root / "series"),
        parcels=Path(parcels) if parcels else None, store_url=settings.alerts.store_url,
        group_id=settings.bus.group_id, topic=settings.monitor.topic, alerts_topic=settings.monitor.alerts_topic,
        dead_letter_topic=f"{settings.monitor.topic}.dlq",
        detectors=tuple(detectors.split(",")) if detectors else tuple(settings.monitor.detectors),
        checkpoint=checkpoint, device="cpu" if settings.encoder.device == "auto" else settings.encoder.device,
        checkpoint_days=settings.monitor.checkpoint_days, retention_days=settings.monitor.retention_days,
        save_every=settings.monitor.save_every, max_records=settings.monitor.max_records,
        webhook_url=settings.alerts.webhook_url, webhook_secret=settings.alerts.webhook_secret.get_secret_value(),
        metrics_port=port if port is not None else settings.monitor.metrics_port,
        watch_areas=tuple(settings.monitor.watch_areas), cubes_dir=settings.storage.cubes_url or settings.ingest.cubes_dir,
        health_stale_s=settings.monitor.health_stale_s, health_prune_s=settings.monitor.health_prune_s,
        states_url=settings.storage.states_url, calendar=settings.campaigns.calendar(),
    )


def make_bus(settings: Settings, data_dir: Path) -> Any:
    from monitor.bus import make_bus as _make

    timeouts = {"session_timeout_s": settings.bus.session_timeout_s,
                "max_poll_interval_s": settings.bus.max_poll_interval_s}
    if settings.bus.backend == "kafka":
        return _make("kafka", settings.bus.bootstrap_servers, settings.bus.api_version or None, **timeouts)
    return _make("memory", path=settings.bus.path or data_dir / "bus.sqlite", **timeouts)


def make_sinks(config, bus) -> list[Any]:
    from alerts.sinks.kafka import KafkaAlertSink

    sinks: list[Any] = [KafkaAlertSink(bus, config.alerts_topic)]
    if config.webhook_url:
        from alerts.sinks.webhook import WebhookSink

        if not config.webhook_secret:
            raise ValueError("[alerts] webhook_url is set but SITSMON_ALERTS__WEBHOOK_SECRET is empty")
        sinks.append(WebhookSink(config.webhook_url, config.webhook_secret,
                                 config.state_root / "webhook-dead-letters.jsonl", max_attempts=2, timeout_s=5.0))
    return sinks


def _say(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def run(args: argparse.Namespace, settings: Settings) -> int:
    from monitor.service import Monitor, Service, format_fold

    config = monitor_config(args, settings)
    bus = make_bus(settings, config.data_dir)
    monitor = Monitor(config, sinks=make_sinks(config, bus))
    on_fold = None if args.quiet else (lambda report: _say(format_fold(report)))
    service = Service(monitor, bus, on_fold=on_fold)
    if monitor.health.metrics_url:
        _say(f"metrics on {monitor.health.metrics_url}")
    try:
        if args.once:
            report = service.run_once()
            monitor.update_lights(report.tiles)
        else:
            _say(f"monitor: consuming {config.topic} as group {config.group_id} (Ctrl-C to stop)")
            try:
                report = service.run_forever()
            except KeyboardInterrupt:
                report = service.report
    finally:
        service.close()
        bus.close()
    print(json.dumps(report.to_dict()))
    return 0


def replay(args: argparse.Namespace, settings: Settings) -> int:
    from monitor.replay import replay_period
    from monitor.service import Monitor

    config = monitor_config(args, settings)
    tiles = [t for t in args.tiles.split(",") if t] or None
    fold = {"form": args.form, "block_size": args.block_size, "rewind_points": args.rewind_points}
    scheduler = settings.dask.scheduler if args.scheduler is None else args.scheduler
    if scheduler:
        from monitor.distributed import DaskOptions, replay_distributed

        workers = settings.dask.workers if args.workers is None else args.workers
        options = DaskOptions(scheduler=scheduler, workers=workers, retries=settings.dask.retries)
        print(json.dumps(replay_distributed(config, args.start, args.end, tiles, options=options, progress=_say,
                                            fold=fold)))
        return 0
    monitor = Monitor(config, sinks=[])
    try:
        result = replay_period(monitor, args.start, args.end, tiles, progress=_say, **fold)
    finally:
        monitor.close()
    print(json.dumps(result))
    return 0


def status(args: argparse.Namespace, settings: Settings) -> int:
    from monitor.status import monitor_status

    root = (args.data_dir or settings.paths.data_dir).resolve()
    print(json.dumps(monitor_status(root / "monitor"), indent=1))
    return 0
