# /etc/lictor.d/client.hcl on every other machine (the servers are 10.0.0.11-13 in this example).
# Replace every placeholder in angle brackets; the agent refuses to start on one it finds and names the key.
#   <THIS_HOST_IP>   this machine's private address
#   <GOSSIP_KEY>     the servers' key (`lictor keygen` was run once)
#   <AGENT_TOKEN>    a token with `node "<name>" { policy = "write" }` for this node (and
#                    `service_prefix "" { policy = "read" }`); see server.hcl
# TLS files: the CA certificate and this machine's `lictor tls cert create -client` pair in
# /etc/lictor.d/tls/, mode 0640 root:lictor.
datacenter  = "dc1"
data_dir    = "/var/lib/lictor"
bind_addr   = "<THIS_HOST_IP>"
client_addr = "127.0.0.1"
# LAN gossip (serf) addresses; a bare IP means port 8301 (never the server RPC port 8300)
retry_join  = ["10.0.0.11", "10.0.0.12", "10.0.0.13"]
encrypt     = "<GOSSIP_KEY>"

tls {
  defaults {
    ca_file         = "/etc/lictor.d/tls/consul-agent-ca.pem"
    cert_file       = "/etc/lictor.d/tls/dc1-client-consul-0.pem"
    key_file        = "/etc/lictor.d/tls/dc1-client-consul-0-key.pem"
    verify_incoming = false
    verify_outgoing = true
  }
  internal_rpc {
    verify_server_hostname = true
  }
}

acl {
  enabled                  = true
  default_policy           = "deny"
  down_policy              = "extend-cache"
  enable_token_persistence = true
  tokens {
    agent = "<AGENT_TOKEN>"
  }
}

ports {
  grpc = 8502
}
