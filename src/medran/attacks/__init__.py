"""Attacks: the MF-ii image attack, target pairing, caption attacks and the attack order."""
