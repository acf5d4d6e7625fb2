# /etc/lictor.d/server.hcl on each of 3 server machines (10.0.0.11-13 in this example).
# Replace every placeholder in angle brackets; the agent refuses to start on one it finds and names the key.
#   <THIS_HOST_IP>     this machine's private address (one of 10.0.0.11-13 here)
#   <GOSSIP_KEY>       `lictor keygen`, once, the same on every agent
#   <INITIAL_MANAGEMENT_TOKEN>  a UUID (`uuidgen`), the same on every server: the first
#                      management token, created by the leader; keep it secret
#   <AGENT_TOKEN>      a token with `node_prefix "" { policy = "write" }` and
#                      `service_prefix "" { policy = "read" }` (`lictor acl token create ...`);
#                      until you have one, the management token works
# TLS files (`lictor tls ca create`, then `lictor tls cert create -server` once per server) go to
# /etc/lictor.d/tls/ (subdirectories of a config dir are not read as config), mode 0640 root:lictor.
datacenter       = "dc1"
data_dir         = "/var/lib/lictor"
server           = true
bootstrap_expect = 3
bind_addr        = "<THIS_HOST_IP>"
client_addr      = "127.0.0.1"
# LAN gossip (serf) addresses; a bare IP means port 8301 (never the server RPC port 8300)
retry_join       = ["10.0.0.11", "10.0.0.12", "10.0.0.13"]
log_level        = "info"
encrypt          = "<GOSSIP_KEY>"

tls {
  defaults {
    ca_file         = "/etc/lictor.d/tls/consul-agent-ca.pem"
    cert_file       = "/etc/lictor.d/tls/dc1-server-consul-0.pem"
    key_file        = "/etc/lictor.d/tls/dc1-server-consul-0-key.pem"
    verify_incoming = true
    verify_outgoing = true
  }
  internal_rpc {
    # only certificates for server.dc1.consul may speak Raft
    verify_server_hostname = true
  }
  https {
    # browsers and the CLI reach 8501 without a client certificate
    verify_incoming = false
  }
}
ports {
  https = 8501
}

acl {
  enabled                  = true
  default_policy           = "deny"
  down_policy              = "extend-cache"
  enable_token_persistence = true
  tokens {
    initial_management = "<INITIAL_MANAGEMENT_TOKEN>"
    agent              = "<AGENT_TOKEN>"
  }
}

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
