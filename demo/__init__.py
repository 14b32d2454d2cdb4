"""A small generated demo catalogue: drawn garments, shoes and bags with a
styles.csv, in the same layout as the Kaggle fashion catalogue. It lets the
service start on a fresh machine that has no catalogue."""
