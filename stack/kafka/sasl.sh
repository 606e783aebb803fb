# The local broker's SASL_SSL listener (sourced by stack/stack.sh): a CA, a broker certificate for
# 127.0.0.1/localhost and a client certificate made with openssl, one user (`stockwatch`, password
# generated) for SCRAM-SHA-512, SCRAM-SHA-256 and PLAIN, and the file clients read it all from.
#
#   $SASL_DIR/ca.pem        the CA that signed both certificates (clients: kafka_ssl_cafile)
#   $SASL_DIR/broker.pem    the broker's PKCS#8 key and certificate chain (a PEM keystore)
#   $SASL_DIR/client.pem, client.key   a client certificate (the listener requests one, needs none)
#   $SASL_DIR/password      the user's password
#   $SASL_DIR/client.env    STOCKWATCH_KAFKA_* settings that reach the listener (tests read them)

sasl_password() { cat "$SASL_DIR/password"; }

# Certificates and the password, made once per state dir (kept across restarts and re-formats).
make_sasl_material() {
  [[ -f $SASL_DIR/client.env && -f $SASL_DIR/broker.pem ]] && return 0
  need openssl "install openssl (Debian: apt-get install openssl) to make the SASL_SSL listener's certificates"
  log "making the SASL_SSL listener's CA and certificates in $SASL_DIR"
  mkdir -p "$SASL_DIR"
  chmod 700 "$SASL_DIR"
  local d=$SASL_DIR
  (
    set -e
    umask 077
    openssl req -x509 -newkey rsa:2048 -nodes -days 3650 -subj "/CN=StockWatch local stack CA" \
      -keyout "$d/ca.key" -out "$d/ca.pem"
    for who in broker client; do
      if [[ $who == broker ]]; then
        printf 'subjectAltName=DNS:localhost,IP:127.0.0.1\nextendedKeyUsage=serverAuth\n' >"$d/$who.ext"
      else
        printf 'extendedKeyUsage=clientAuth\n' >"$d/$who.ext"
      fi
      openssl req -newkey rsa:2048 -nodes -subj "/CN=stockwatch-$who" -keyout "$d/$who.key" -out "$d/$who.csr"
      openssl x509 -req -in "$d/$who.csr" -CA "$d/ca.pem" -CAkey "$d/ca.key" -CAcreateserial -days 3650 \
        -extfile "$d/$who.ext" -out "$d/$who.crt"
      rm -f "$d/$who.csr" "$d/$who.ext"
    done
    # Kafka's PEM keystore: the unencrypted PKCS#8 key, then the certificate chain.
    { openssl pkcs8 -topk8 -nocrypt -in "$d/broker.key"; cat "$d/broker.crt" "$d/ca.pem"; } >"$d/broker.pem"
    mv "$d/client.crt" "$d/client.pem"
    openssl rand -hex 24 >"$d/password"
    printf '%s\n' \
      "STOCKWATCH_KAFKA_BOOTSTRAP=127.0.0.1:$SASL_PORT" \
      "STOCKWATCH_KAFKA_SECURITY_PROTOCOL=SASL_SSL" \
      "STOCKWATCH_KAFKA_SASL_MECHANISM=SCRAM-SHA-512" \
      "STOCKWATCH_KAFKA_SASL_USERNAME=stockwatch" \
      "STOCKWATCH_KAFKA_SASL_PASSWORD=$(cat "$d/password")" \
      "STOCKWATCH_KAFKA_SSL_CAFILE=$d/ca.pem" \
      "STOCKWATCH_KAFKA_SSL_CERTFILE=$d/client.pem" \
      "STOCKWATCH_KAFKA_SSL_KEYFILE=$d/client.key" >"$d/client.env.tmp"
    mv "$d/client.env.tmp" "$d/client.env"
  ) >"$d/openssl.log" 2>&1 || { cat "$d/openssl.log" >&2; die "openssl could not make the certificates"; }
}

# The broker properties of the listener (appended to server.properties; the PLAIN user's password
# is in it, so the file is private).
sasl_properties() {
  local d=$SASL_DIR pw
  pw=$(sasl_password)
  printf '%s\n' \
    "sasl.enabled.mechanisms=SCRAM-SHA-512,SCRAM-SHA-256,PLAIN" \
    "listener.name.sasl_ssl.scram-sha-512.sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required;" \
    "listener.name.sasl_ssl.scram-sha-256.sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required;" \
    "listener.name.sasl_ssl.plain.sasl.jaas.config=org.apache.kafka.common.security.plain.PlainLoginModule required user_stockwatch=\"$pw\";" \
    "listener.name.sasl_ssl.ssl.keystore.type=PEM" \
    "listener.name.sasl_ssl.ssl.keystore.location=$d/broker.pem" \
    "listener.name.sasl_ssl.ssl.truststore.type=PEM" \
    "listener.name.sasl_ssl.ssl.truststore.location=$d/ca.pem" \
    "listener.name.sasl_ssl.ssl.client.auth=requested"
}

# `kafka-storage format --add-scram` arguments: on a fresh stack the users exist from the first start.
scram_format_args() {
  local pw
  pw=$(sasl_password)
  SCRAM_ARGS=(--add-scram "SCRAM-SHA-512=[name=stockwatch,password=$pw]"
    --add-scram "SCRAM-SHA-256=[name=stockwatch,password=$pw]")
}

# The stamp naming the password whose SCRAM credentials the broker's metadata holds.
scram_stamp_value() { sasl_password | sha256sum | cut -d' ' -f1; }

# Storage formatted before the listener existed (or the password was remade): add the SCRAM
# credentials through the running broker's PLAINTEXT listener with Kafka's own ConfigCommand.
ensure_scram_users() {
  local stamp=$KAFKA_HOME/scram-users.sha256 want pw
  want=$(scram_stamp_value)
  [[ -f $stamp && $(cat "$stamp") == "$want" ]] && return 0
  pw=$(sasl_password)
  log "adding the SCRAM user stockwatch through 127.0.0.1:$KAFKA_PORT"
  local mechanism # one mechanism per request: the broker refuses two credentials of a user at once
  for mechanism in SCRAM-SHA-512 SCRAM-SHA-256; do
    java -cp "$KAFKA_LIBS/*" -Dlog4j2.configurationFile="$ROOT/stack/kafka/log4j2.properties" \
      -Dkafka.log.file="$KAFKA_HOME/configs.log" kafka.admin.ConfigCommand \
      --bootstrap-server "127.0.0.1:$KAFKA_PORT" --alter --entity-type users --entity-name stockwatch \
      --add-config "$mechanism=[password=$pw]" >"$KAFKA_HOME/configs.out" 2>&1 \
      || { cat "$KAFKA_HOME/configs.out" >&2; die "could not add the SCRAM user (Kafka's ConfigCommand failed)"; }
  done
  echo "$want" >"$stamp"
}
