#!/bin/bash
# The compose cluster's ACLs (deploy/README.md, "Threat model"), set once the broker is up
# by docker-compose.yml's one-shot `kafka-acls` service, logged in as admin. Deny by
# default (allow.everyone.if.no.acl.found=false): whoever is not named here can do nothing.
set -euo pipefail

S=/secrets/kafka
PREFIX="${TOPIC_PREFIX:-loket.}"
PARTNERS="${PARTNERS:-dtv kmar dji dvo coa ind politie gza quality}"
cat > /tmp/admin.properties <<PROPERTIES
security.protocol=SASL_SSL
sasl.mechanism=SCRAM-SHA-512
sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required username="admin" password="$(cat "$S/scram/admin")";
ssl.truststore.type=PEM
ssl.truststore.location=$S/ca.pem
PROPERTIES
acls() {
  /opt/kafka/bin/kafka-acls.sh --bootstrap-server kafka:9092 --command-config /tmp/admin.properties --add "$@"
}

# The gateways: the only writers. They create loket's topics, produce to them
# (idempotently), and read delivery topics in the partners' consumer groups to serve
# Kafka-mode subscriptions.
acls --allow-principal User:gateway --resource-pattern-type prefixed --topic "$PREFIX" \
  --operation Create --operation Write --operation Describe --operation DescribeConfigs
acls --allow-principal User:gateway --cluster --operation IdempotentWrite
acls --allow-principal User:gateway --resource-pattern-type prefixed --topic "${PREFIX}delivery." --operation Read
acls --allow-principal User:gateway --resource-pattern-type prefixed --group "$PREFIX" --operation Read

# Each partner: reads its own delivery topic, in consumer groups of its own, and nothing
# else; writes nothing.
for partner in $PARTNERS; do
  acls --allow-principal "User:$partner" --topic "${PREFIX}delivery.$partner" --operation Read --operation Describe
  acls --allow-principal "User:$partner" --resource-pattern-type prefixed --group "${PREFIX}$partner." \
    --operation Read --operation Describe
done

# With [kafka] canonical_view = "<partner>", that partner's principal (and only principals
# entitled to that view) may read the canonical topics:
if [ -n "${CANONICAL_READER:-}" ]; then
  acls --allow-principal "User:$CANONICAL_READER" --resource-pattern-type prefixed --topic "${PREFIX}events." \
    --operation Read --operation Describe
fi
/opt/kafka/bin/kafka-acls.sh --bootstrap-server kafka:9092 --command-config /tmp/admin.properties --list
