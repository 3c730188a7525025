"""The verifiable log: Merkle leaves beside the events, signed checkpoints, proofs, replay."""
