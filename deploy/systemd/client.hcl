# /etc/lictor.d/client.hcl on every other machine.
datacenter  = "dc1"
data_dir    = "/var/lib/lictor"
bind_addr   = "10.0.0.21"  # this machine's private IP
client_addr = "127.0.0.1"
# LAN gossip (serf) addresses; a bare IP means port 8301 (never the server RPC port 8300)
retry_join  = ["10.0.0.11", "10.0.0.12", "10.0.0.13"]
ports {
  grpc = 8502
}
