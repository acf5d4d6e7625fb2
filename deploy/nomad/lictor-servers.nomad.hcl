# Three Lictor servers as a Nomad service job, one per host, with host networking and a host
# volume for the Raft data. Create the host volume "lictor-data" on each server host first.
job "lictor-servers" {
  datacenters = ["dc1"]
  type        = "service"

  group "server" {
    count = 3

    constraint {
      operator = "distinct_hosts"
      value    = "true"
    }

    network {
      mode = "host"
    }

    volume "data" {
      type   = "host"
      source = "lictor-data"
    }

    task "lictor" {
      driver = "exec"

      volume_mount {
        volume      = "data"
        destination = "/var/lib/lictor"
      }

      config {
        command = "/opt/lictor/venv/bin/lictor"
        args = [
          "agent", "-server", "-bootstrap-expect=3",
          "-data-dir=/var/lib/lictor",
          "-bind=${attr.unique.network.ip-address}",
          "-client=127.0.0.1",
          # the servers' LAN gossip (serf) port 8301, never the server RPC port 8300
          "-retry-join=lictor-server-1.internal:8301",
          "-retry-join=lictor-server-2.internal:8301",
          "-retry-join=lictor-server-3.internal:8301",
          # Consul's production recommendation (built-in default 5): election timeout 1-2 s.
          "-hcl=performance { raft_multiplier = 1 }",
        ]
      }

      resources {
        cpu    = 1000
        memory = 512
      }

      kill_signal  = "SIGTERM"
      kill_timeout = "30s"
    }
  }
}
