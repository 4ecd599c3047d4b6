#!/bin/bash
# kafka-server-start.sh PROPERTIES: the broker, with its own logging and heap.
export KAFKA_LOG4J_CONFIG=${KAFKA_LOG4J_CONFIG:-/etc/kafka/docker/log4j2.properties}
export KAFKA_HEAP_OPTS=${KAFKA_HEAP_OPTS:--Xmx1g -Xms1g}
exec "$(dirname "$0")/kafka-run-class.sh" kafka.Kafka "$@"
