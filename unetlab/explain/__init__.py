"""Why deep units lose location: receptive fields (theoretical and effective) and the top-k patches per unit, with
their pictures."""
