# Three Lictor servers as a Nomad service job, one per host (distinct_hosts), with host networking
# and a host volume for the Raft data. Before `nomad job run`:
#   - on each server host, a host volume "lictor-data" in the Nomad client config:
#       client { host_volume "lictor-data" { path = "/var/lib/lictor" read_only = false } }
#   - the secrets as a Nomad variable readable by this job:
#       nomad var put nomad/jobs/lictor-servers gossip_key="$(lictor keygen)" \
#         initial_management_token="$(uuidgen)" agent_token=... \
#         ca_pem=@consul-agent-ca.pem server_pem=@dc1-server-consul-0.pem server_key_pem=@dc1-server-consul-0-key.pem
#   - lictor-server-{1,2,3}.internal resolving to the three server hosts (or edit -retry-join).
job "lictor-servers" {
  datacenters = ["dc1"]
  type        = "service"

  group "server" {
    count = 3

    constraint {
      operator = "distinct_hosts"
      value    = "true"
    }

    # Consul's defaults, so clients and tools find the servers where they expect them
    network {
      mode = "host"
      port "http" {
        static = 8500
      }
      port "server" {
        static = 8300
      }
      port "serf_lan" {
        static = 8301
      }
      port "grpc" {
        static = 8502
      }
    }

    volume "data" {
      type      = "host"
      source    = "lictor-data"
      read_only = false
    }

    update {
      max_parallel = 1  # one server at a time keeps the Raft quorum
    }

    task "lictor" {
      driver = "docker"

      config {
        image        = "lictor:0.1.0"
        network_mode = "host"
        ports        = ["http", "server", "serf_lan", "grpc"]
        args = [
          "agent", "-server", "-bootstrap-expect=3",
          "-data-dir=/var/lib/lictor",
          "-config-file=${NOMAD_SECRETS_DIR}/lictor.hcl",
          "-bind=${attr.unique.network.ip-address}",
          "-node=${node.unique.name}",
          "-client=127.0.0.1",
          "-http-port=${NOMAD_PORT_http}",
          "-server-port=${NOMAD_PORT_server}",
          "-serf-lan-port=${NOMAD_PORT_serf_lan}",
          "-grpc-port=${NOMAD_PORT_grpc}",
          # the servers' LAN gossip (serf) port 8301, never the server RPC port 8300
          "-retry-join=lictor-server-1.internal:8301",
          "-retry-join=lictor-server-2.internal:8301",
          "-retry-join=lictor-server-3.internal:8301",
          # Consul's production recommendation (built-in default 5): election timeout 1-2 s.
          "-hcl=performance { raft_multiplier = 1 }",
        ]
      }

      volume_mount {
        volume      = "data"
        destination = "/var/lib/lictor"
      }

      # gossip key, ACL tokens and TLS files from the job's Nomad variable, never in the job file
      template {
        destination = "secrets/lictor.hcl"
        change_mode = "signal"
        change_signal = "SIGHUP"
        data = <<EOH
{{ with nomadVar "nomad/jobs/lictor-servers" }}
encrypt = "{{ .gossip_key }}"
acl {
  enabled                  = true
  default_policy           = "deny"
  down_policy              = "extend-cache"
  enable_token_persistence = true
  tokens {
    initial_management = "{{ .initial_management_token }}"
    agent              = "{{ .agent_token }}"
  }
}
{{ end }}
tls {
  defaults {
    ca_file         = "/secrets/ca.pem"
    cert_file       = "/secrets/server.pem"
    key_file        = "/secrets/server-key.pem"
    verify_incoming = true
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
        data        = "{{ with nomadVar \"nomad/jobs/lictor-servers\" }}{{ .ca_pem }}{{ end }}"
      }
      template {
        destination = "secrets/server.pem"
        data        = "{{ with nomadVar \"nomad/jobs/lictor-servers\" }}{{ .server_pem }}{{ end }}"
      }
      template {
        destination = "secrets/server-key.pem"
        perms       = "0400"
        data        = "{{ with nomadVar \"nomad/jobs/lictor-servers\" }}{{ .server_key_pem }}{{ end }}"
      }

      resources {
        cpu    = 1000
        memory = 512
      }

      # servers do not leave on SIGTERM (Consul's default): a restarted server rejoins as it was
      kill_signal  = "SIGTERM"
      kill_timeout = "30s"
    }
  }
}
