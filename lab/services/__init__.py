"""The seed's services in the lab: configuration rendering (pure) and the daemons' start/stop."""
