# A Lictor client agent on every Nomad client node (system job), HTTP API and xDS on the node's
# loopback for local services and sidecars. Before `nomad job run`, the secrets as a Nomad variable:
#   nomad var put nomad/jobs/lictor-clients gossip_key=<the servers' key> agent_token=... \
#     ca_pem=@consul-agent-ca.pem client_pem=@dc1-client-consul-0.pem client_key_pem=@dc1-client-consul-0-key.pem
job "lictor-clients" {
  datacenters = ["dc1"]
  type        = "system"

  group "agent" {
    network {
      mode = "host"
      port "http" {
        static = 8500
      }
      port "grpc" {
        static = 8502
      }
      port "serf_lan" {
        static = 8301
      }
    }

    task "lictor" {
      driver = "docker"

      config {
        image        = "lictor:0.1.0"
        network_mode = "host"
        ports        = ["http", "grpc", "serf_lan"]
        args = [
          "agent",
          "-data-dir=/alloc/data/lictor",
          "-config-file=${NOMAD_SECRETS_DIR}/lictor.hcl",
          "-bind=${attr.unique.network.ip-address}",
          "-node=${node.unique.name}",
          "-client=127.0.0.1",
          "-http-port=${NOMAD_PORT_http}",
          "-grpc-port=${NOMAD_PORT_grpc}",
          "-serf-lan-port=${NOMAD_PORT_serf_lan}",
          # the servers' LAN gossip (serf) port 8301, never the server RPC port 8300
          "-retry-join=lictor-server-1.internal:8301",
          "-retry-join=lictor-server-2.internal:8301",
          "-retry-join=lictor-server-3.internal:8301",
        ]
      }

      template {
        destination   = "secrets/lictor.hcl"
        change_mode   = "signal"
        change_signal = "SIGHUP"
        data = <<EOH
{{ with nomadVar "nomad/jobs/lictor-clients" }}
encrypt = "{{ .gossip_key }}"
acl {
  enabled                  = true
  default_policy           = "deny"
  down_policy              = "extend-cache"
  enable_token_persistence = true
  tokens {
    agent = "{{ .agent_token }}"
  }
}
{{ end }}
tls {
  defaults {
    ca_file         = "/secrets/ca.pem"
    cert_file       = "/secrets/client.pem"
    key_file        = "/secrets/client-key.pem"
    verify_outgoing = true
  }
  internal_rpc {
    verify_server_hostname = true
  }
}
EOH
      }
      template {
        destination = "secrets/ca.pem"
        data        = "{{ with nomadVar \"nomad/jobs/lictor-clients\" }}{{ .ca_pem }}{{ end }}"
      }
      template {
        destination = "secrets/client.pem"
        data        = "{{ with nomadVar \"nomad/jobs/lictor-clients\" }}{{ .client_pem }}{{ end }}"
      }
      template {
        destination = "secrets/client-key.pem"
        perms       = "0400"
        data        = "{{ with nomadVar \"nomad/jobs/lictor-clients\" }}{{ .client_key_pem }}{{ end }}"
      }

      resources {
        cpu    = 200
        memory = 128
      }

      # client agents leave gracefully on SIGTERM (leave_on_terminate is their default)
      kill_signal  = "SIGTERM"
      kill_timeout = "15s"
    }
  }
}
