#!/bin/bash
# Starts the compose cluster's Kafka node (apache/kafka image, as its appuser): KRaft,
# one combined broker and controller, clients on SASL_SSL (SCRAM-SHA-512) at kafka:9092,
# the controller on plaintext localhost:9093 (unreachable from other containers), the
# StandardAuthorizer denying whatever no ACL allows. On first start it formats the log
# directory with the SCRAM users make-secrets.sh made (/secrets/kafka/scram/<user>).
set -euo pipefail

S=/secrets/kafka
CONFIG=/tmp/server.properties
DATA=/var/lib/kafka/data
admin_password="$(cat "$S/scram/admin")"

cat > "$CONFIG" <<PROPERTIES
node.id=1
process.roles=broker,controller
controller.quorum.voters=1@localhost:9093
controller.listener.names=CONTROLLER
listeners=SASL_SSL://:9092,CONTROLLER://localhost:9093
advertised.listeners=SASL_SSL://kafka:9092
listener.security.protocol.map=SASL_SSL:SASL_SSL,CONTROLLER:PLAINTEXT
inter.broker.listener.name=SASL_SSL
sasl.enabled.mechanisms=SCRAM-SHA-512
sasl.mechanism.inter.broker.protocol=SCRAM-SHA-512
listener.name.sasl_ssl.scram-sha-512.sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required username="admin" password="$admin_password";
ssl.keystore.type=PEM
ssl.keystore.location=$S/broker.pem
ssl.truststore.type=PEM
ssl.truststore.location=$S/ca.pem
ssl.client.auth=none
authorizer.class.name=org.apache.kafka.metadata.authorizer.StandardAuthorizer
# admin: the broker itself and the ACL setup. ANONYMOUS: the controller listener, which
# only this container reaches.
super.users=User:admin;User:ANONYMOUS
allow.everyone.if.no.acl.found=false
auto.create.topics.enable=false
offsets.topic.replication.factor=1
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
log.dirs=$DATA
PROPERTIES

# What the health check and the ACL setup log in with.
cat > /tmp/admin.properties <<PROPERTIES
security.protocol=SASL_SSL
sasl.mechanism=SCRAM-SHA-512
sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required username="admin" password="$admin_password";
ssl.truststore.type=PEM
ssl.truststore.location=$S/ca.pem
PROPERTIES

if [ ! -f "$DATA/meta.properties" ]; then
  users=()
  for file in "$S"/scram/*; do
    users+=(--add-scram "SCRAM-SHA-512=[name=$(basename "$file"),password=$(cat "$file")]")
  done
  /opt/kafka/bin/kafka-storage.sh format --config "$CONFIG" --cluster-id "${CLUSTER_ID}" "${users[@]}"
fi
exec /opt/kafka/bin/kafka-server-start.sh "$CONFIG"
