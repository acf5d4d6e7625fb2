# A Lictor client agent on every Nomad client node (system job), HTTP API on the node's
# loopback for local services and sidecars.
job "lictor-clients" {
  datacenters = ["dc1"]
  type        = "system"

  group "agent" {
    network {
      mode = "host"
    }

    task "lictor" {
      driver = "exec"

      config {
        command = "/opt/lictor/venv/bin/lictor"
        args = [
          "agent",
          "-data-dir=${NOMAD_TASK_DIR}/data",
          "-bind=${attr.unique.network.ip-address}",
          "-client=127.0.0.1",
          "-grpc-port=8502",
          # the servers' LAN gossip (serf) port 8301, never the server RPC port 8300
          "-retry-join=lictor-server-1.internal:8301",
          "-retry-join=lictor-server-2.internal:8301",
          "-retry-join=lictor-server-3.internal:8301",
        ]
      }

      resources {
        cpu    = 200
        memory = 128
      }
    }
  }
}
