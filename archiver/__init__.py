"""City social-media records archiver."""
