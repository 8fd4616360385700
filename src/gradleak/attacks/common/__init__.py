"""Small, separately tested pieces that attacks share."""
