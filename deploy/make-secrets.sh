#!/bin/sh
# Makes the secrets of the compose cluster (docker-compose.yml's one-shot `secrets`
# service runs it with the loket image, as root, into named volumes), once: a run finds
# what an earlier one made and leaves it alone.
#
#   $SECRETS/ca/         the cluster CA's key (only this service mounts it)
#   $SECRETS/kafka/      broker.pem (key and certificate for kafka:9092), ca.pem, and
#                        scram/<user>: the SCRAM-SHA-512 passwords the broker is formatted with
#   $SECRETS/gateway/    ca.pem, server.pem/.key (gRPC, for localhost and gateway-1/-2),
#                        kafka-password (SCRAM user `gateway`), record.key (the record
#                        tag key the gateways share), health/ (a client certificate for
#                        the health check)
#   $SECRETS/partners/   ca.pem, <partner>.pem/.key (gRPC client certificates) and
#                        <partner>.kafka-password, to hand to the partners:
#                        docker compose cp secrets:/secrets/partners ./partner-certs
#
# Every key is readable by its user only: the broker's by KAFKA_UID (the apache/kafka
# image's appuser), the gateway's by LOKET_UID (the loket image's user).
set -eu

SECRETS="${SECRETS:-/secrets}"
KAFKA_UID="${KAFKA_UID:-1000}"
LOKET_UID="${LOKET_UID:-10001}"
PARTNERS="${PARTNERS:-dtv kmar dji dvo coa ind politie gza quality}"
DAYS=825

if [ -f "$SECRETS/ca/ca.pem" ]; then
  echo "secrets already made in $SECRETS"
  exit 0
fi

umask 077
mkdir -p "$SECRETS/ca" "$SECRETS/kafka/scram" "$SECRETS/gateway/health" "$SECRETS/partners"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days "$DAYS" \
  -subj "/CN=loket cluster CA" -keyout "$SECRETS/ca/ca.key" -out "$work/ca.pem" 2>/dev/null

# leaf NAME CN USAGE SANS DIR: DIR/NAME.pem and DIR/NAME.key signed by the CA; USAGE is
# serverAuth or clientAuth; SANS an openssl subjectAltName value or "".
leaf() {
  {
    echo "basicConstraints=critical,CA:FALSE"
    echo "keyUsage=critical,digitalSignature,keyEncipherment"
    echo "extendedKeyUsage=$3"
    [ -z "$4" ] || echo "subjectAltName=$4"
  } > "$work/ext"
  openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj "/CN=$2" \
    -keyout "$5/$1.key" -out "$work/$1.csr" 2>/dev/null
  openssl x509 -req -in "$work/$1.csr" -CA "$work/ca.pem" -CAkey "$SECRETS/ca/ca.key" -CAcreateserial \
    -CAserial "$work/ca.srl" -days "$DAYS" -extfile "$work/ext" -out "$5/$1.pem" 2>/dev/null
}

# A password of letters and digits (safe in JAAS and --add-scram syntax).
password() {
  head -c 48 /dev/urandom | base64 | tr -dc 'A-Za-z0-9' | head -c 32
}

for dir in kafka gateway gateway/health partners; do
  cp "$work/ca.pem" "$SECRETS/$dir/ca.pem"
done

# The broker: TLS for kafka:9092 and its PEM keystore (key and certificate in one file).
leaf broker kafka serverAuth "DNS:kafka,DNS:localhost" "$work"
cat "$work/broker.key" "$work/broker.pem" > "$SECRETS/kafka/broker.pem"
password > "$SECRETS/kafka/scram/admin"

# The gateways: gRPC server certificate, Kafka login, the shared record key, and a
# client certificate for their health check.
leaf server localhost serverAuth "DNS:localhost,DNS:gateway-1,DNS:gateway-2,IP:127.0.0.1" "$SECRETS/gateway"
password > "$SECRETS/gateway/kafka-password"
cp "$SECRETS/gateway/kafka-password" "$SECRETS/kafka/scram/gateway"
head -c 48 /dev/urandom | base64 > "$SECRETS/gateway/record.key"
leaf health health clientAuth "" "$SECRETS/gateway/health"

# The partners: a gRPC client certificate each (CN = partner id) and a Kafka login for
# those that read their delivery topic natively.
for partner in $PARTNERS; do
  leaf "$partner" "$partner" clientAuth "" "$SECRETS/partners"
  password > "$SECRETS/partners/$partner.kafka-password"
  cp "$SECRETS/partners/$partner.kafka-password" "$SECRETS/kafka/scram/$partner"
done

# Certificates are public, keys and passwords are not; each volume belongs to its user.
find "$SECRETS" -name '*.pem' ! -path "$SECRETS/kafka/broker.pem" -exec chmod 0444 {} +
chmod 0755 "$SECRETS/kafka" "$SECRETS/gateway" "$SECRETS/gateway/health" "$SECRETS/partners"
if [ "$(id -u)" -eq 0 ]; then
  chown -R "$KAFKA_UID:$KAFKA_UID" "$SECRETS/kafka"
  chown -R "$LOKET_UID:$LOKET_UID" "$SECRETS/gateway"
fi
mv "$work/ca.pem" "$SECRETS/ca/ca.pem"
echo "secrets made in $SECRETS"
