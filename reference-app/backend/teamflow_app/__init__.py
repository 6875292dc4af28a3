"""TeamFlow reference backend: what teamflow.platform deploys in its tests and demos."""
