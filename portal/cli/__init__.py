"""`gateway-admin`: the operators' command line."""
