#!/bin/bash
# kafka-run-class.sh CLASS ARGS...: run one of Kafka's classes with the
# image's jars. Tools log warnings to stderr; the broker uses its own config.
exec java ${KAFKA_HEAP_OPTS:--Xmx256m} ${KAFKA_JVM_PERFORMANCE_OPTS:--XX:+UseG1GC -Djava.awt.headless=true} ${KAFKA_OPTS:-} \
	-Dlog4j2.configurationFile="${KAFKA_LOG4J_CONFIG:-/etc/kafka/docker/tools-log4j2.properties}" \
	-cp '/opt/kafka/libs/*' "$@"
