# /etc/lictor.d/server.hcl on each of 3 (or 5) server machines.
datacenter       = "dc1"
data_dir         = "/var/lib/lictor"
server           = true
bootstrap_expect = 3
bind_addr        = "10.0.0.11"  # this machine's private IP (10.0.0.11-13 for the three servers)
client_addr      = "127.0.0.1"
# LAN gossip (serf) addresses; a bare IP means port 8301 (never the server RPC port 8300)
retry_join       = ["10.0.0.11", "10.0.0.12", "10.0.0.13"]
log_level        = "info"
# Consul's production recommendation (its built-in default, 5, is sized for tiny dev VMs):
# heartbeat 0.1 s, election timeout 1-2 s. Measured failover (bench/raft): ~1.2-1.6 s with 1,
# ~5.6-7.6 s with 5. Lictor's built-in default stays 5, as Consul's.
performance {
  raft_multiplier = 1
}
ui_config {
  enabled = true
}
connect {
  enabled = true
}
