"""A Flower app (ServerApp + ClientApp) whose server audits every client update with gradleak."""
